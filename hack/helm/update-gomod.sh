#!/usr/bin/env bash
# Regenerates go.mod/go.sum of the helm wrapper module for one helm v3 release.
#
# helm's go.mod has no replace directives (checked v3.22.0), so the wrapper only needs the tool
# line; the k8s.io modules stay at exactly the versions helm's go.mod requires. Should a future
# release add replaces, mirror them here (consumers never see a dependency's replaces), the way
# hack/kube-testenv/update-gomod.sh does for k8s.io/kubernetes. Never "go get -u".
#
# Usage: hack/helm/update-gomod.sh [v3.22.0]
set -euo pipefail
cd "$(dirname "$0")"
HELM_VERSION=${1:-v3.22.0}

gomod=$(go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$gomod" ] || { echo "could not download go.mod of helm.sh/helm/v3@${HELM_VERSION}" >&2; exit 1; }
go_directive=$(awk '$1 == "go" {print $2; exit}' "$gomod")

rm -f go.mod go.sum
go mod init github.com/kube-workflow/kube-workflow/hack/helm >/dev/null 2>&1
go mod edit -go="$go_directive"
# Mirror helm's own replace directives, if any (single-line and block form alike, via go mod edit -json).
while read -r from to; do
  [ -n "$from" ] && go mod edit -replace="$from=$to"
done < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    at = lambda m: m["Path"] + ("@" + m["Version"] if m.get("Version") else "")
    print(at(old), at(new))')
go get -tool "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
go mod tidy
echo "helm ${HELM_VERSION}: k8s.io/client-go $(go list -m -f '{{.Version}}' k8s.io/client-go)"
