#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the kube-testenv wrapper module for one Kubernetes release.
#
# k8s.io/kubernetes requires every staging module at v0.0.0 and resolves them with path replaces
# that consumers never see; the module proxy does not serve v0.0.0. So we read the release's own
# go.mod, and replace every k8s.io module it requires at v0.0.0 with the matching published
# v0.<minor>.<patch> tag. The list is generated, never typed by hand: it changes between minors.
#
# Usage: hack/kube-testenv/update-gomod.sh [v1.36.3]
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=${1:-v1.36.3}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$gomod" ] || { echo "could not download go.mod of k8s.io/kubernetes@${K8S_VERSION}" >&2; exit 1; }
go_directive=$(awk '$1 == "go" {print $2; exit}' "$gomod")
godebug=$(awk '$1 == "godebug" {print $2; exit}' "$gomod")

rm -f go.mod go.sum
go mod init github.com/kube-workflow/kube-workflow/hack/kube-testenv >/dev/null 2>&1
go mod edit -go="$go_directive"
[ -n "$godebug" ] && go mod edit -godebug="$godebug"
for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
  go mod edit -replace="$m=$m@${STAGING_VERSION}"
done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}"
# etcd comes from the same module graph, at the version kube-apiserver was released with: a bare
# "go get -tool" would pick the newest etcd and drag grpc/otel past what Kubernetes expects.
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go get -tool "go.etcd.io/etcd/server/v3@${etcd_version}"
go mod tidy
echo "k8s.io/kubernetes ${K8S_VERSION}: $(grep -c "=>" go.mod) replaces; etcd ${etcd_version}"
