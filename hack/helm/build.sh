#!/usr/bin/env bash
# Builds helm v3 from the wrapper module in this directory into a cache directory outside the repo,
# keyed by the hash of go.mod + go.sum, and prints the path of the binary. A second run with the same
# go.sum does not rebuild. Static binary (CGO off, -trimpath), with the version ldflags of helm's own
# Makefile so `helm version` reports the release and `helm lint`/`helm template` default to the
# Kubernetes minor of the client-go helm was built with (as upstream release binaries do).
#
# Environment: KUBE_TESTENV_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-workflow), the
# binary goes to $KUBE_TESTENV_CACHE/helm/<hash>/helm.
set -euo pipefail
cd "$(dirname "$0")"
command -v go >/dev/null || { echo "hack/helm: the go command is needed to build helm (Go >= 1.26)" >&2; exit 1; }

key=$(cat go.mod go.sum | sha256sum | cut -c1-16)
cache_root=${KUBE_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-workflow}/helm
out="$cache_root/$key"
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi

# One build at a time per cache (parallel test sessions, make test + a developer's shell): wait for
# the lock, then check again whether another process built it meanwhile.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi

helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
# helm's Makefile: Kubernetes major/minor = client-go v0.X.Y -> 1, X.
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
k8s_minor=$(echo "$client_go" | cut -d. -f2)
tmp="$out.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "hack/helm: building helm ${helm_version} into $out (cold: a few minutes on 2 cores)" >&2
start=$(date +%s)
export CGO_ENABLED=0
go build -p 2 -trimpath -o "$tmp/helm" \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${helm_version} \
            -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
            -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
            -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${k8s_minor} \
            -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
            -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}" \
  helm.sh/helm/v3/cmd/helm
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "hack/helm: built in $(( $(date +%s) - start ))s" >&2
echo "$out/helm"
