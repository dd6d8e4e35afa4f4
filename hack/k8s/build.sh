#!/usr/bin/env bash
# Builds Kubernetes (apiserver, kubelet, kubectl, controller-manager, scheduler)
# and etcd from the Go module proxy into ${DS01_K8S_CACHE:-/var/cache/ds01-k8s}/<version>/bin,
# or reuses that directory when it already holds every binary.
# A cold build takes about 5 minutes on 2 cores and ~3 GB of Go build cache.
# Only a complete set counts: binaries are built into a temporary directory
# next to bin/ and renamed into place at the end.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
export PATH=$PATH:/usr/local/go/bin

complete() {
	local b
	for b in "${K8S_BINARIES[@]}"; do [ -x "$K8S_BIN/$b" ] || return 1; done
}
if complete; then
	log "binaries cached in $K8S_BIN"
	exit 0
fi
command -v go >/dev/null || die "go not found (expected in /usr/local/go/bin)"
command -v python3 >/dev/null || die "python3 not found (edits kubernetes' go.mod)"
mkdir -p "$K8S_CACHE"
start=$(date +%s)
tmp=$(mktemp -d "$K8S_CACHE/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The module zip has no staging/ or vendor/: drop the replace block and pin the
# staging repos (k8s.io/api, client-go, ...) to the matching v0 release.
src=$K8S_CACHE/src
if [ ! -f "$src/.ds01-complete" ]; then
	log "fetching k8s.io/kubernetes@$K8S_VERSION from the module proxy"
	dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
	cp -r "$dir" "$tmp/src"
	chmod -R u+w "$tmp/src"
	rm -f "$tmp/src/go.work" "$tmp/src/go.work.sum"
	V0=v0.${K8S_VERSION#v1.} python3 - "$tmp/src/go.mod" <<'PY'
import os, re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r'\nreplace \((.*?)\n\)\n', '\n', s, flags=re.S)
s = re.sub(r'(k8s\.io/[a-z0-9-]+) v0\.0\.0\n', r'\1 ' + os.environ['V0'] + '\n', s)
open(p, 'w').write(s)
PY
	touch "$tmp/src/.ds01-complete"
	rm -rf "$src"
	mv "$tmp/src" "$src"
fi

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ld="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
done
mkdir -p "$tmp/bin"
log "building kubernetes $K8S_VERSION (about 4 minutes cold)"
(cd "$src" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "$ld" -o "$tmp/bin/" \
	./cmd/kube-apiserver ./cmd/kubelet ./cmd/kubectl ./cmd/kube-controller-manager ./cmd/kube-scheduler)

# `go install pkg@version` refuses etcd's module (it has replace directives):
# build it from a scratch module instead.
log "building etcd $ETCD_VERSION"
mkdir -p "$tmp/etcd"
(cd "$tmp/etcd" && go mod init ds01-etcd-build >/dev/null 2>&1 &&
	go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
	CGO_ENABLED=0 go build -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3)

rm -rf "$K8S_BIN"
mv "$tmp/bin" "$K8S_BIN"
complete || die "build finished without every binary in $K8S_BIN"
log "built in $(($(date +%s) - start)) s: $K8S_BIN"
