#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the wrapper module into a cache directory outside the repo,
# keyed by the hash of go.sum, and prints that directory. A second run with the same go.sum does not
# rebuild. Static binaries (CGO off), as upstream ships them.
#
# Environment: KUBE_TESTENV_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/kube-workflow/kube-testenv).
set -euo pipefail
cd "$(dirname "$0")"
command -v go >/dev/null || { echo "kube-testenv: the go command is needed to build the control plane (Go >= 1.26)" >&2; exit 1; }

key=$(cat go.mod go.sum | sha256sum | cut -c1-16)
cache_root=${KUBE_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-workflow/kube-testenv}
out="$cache_root/$key"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

# One build at a time per cache (parallel test sessions, make run + make test): wait for the lock,
# then check again whether another process built it meanwhile.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$k8s_version" | cut -d. -f2)
tmp="$out.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "kube-testenv: building kube-apiserver ${k8s_version} and etcd into $out (cold: ~10 min on 2 cores)" >&2
start=$(date +%s)
export CGO_ENABLED=0
go build -p 2 -trimpath -o "$tmp/kube-apiserver" \
  -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} \
            -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
  k8s.io/kubernetes/cmd/kube-apiserver
go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "kube-testenv: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
