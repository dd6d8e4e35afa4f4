#!/usr/bin/env bash
# Build the minimal Debian base image the gateway and its tests use, from
# what this machine can reach (Debian mirrors only): debootstrap + docker import.
# Cached by tag: if the image exists, this is a no-op.
set -euo pipefail

TAG="${1:-ds01-base:bookworm}"
SUITE="${DS01_BASE_SUITE:-bookworm}"
MIRROR="${DS01_BASE_MIRROR:-http://deb.debian.org/debian}"
INCLUDE="netcat-openbsd,procps,rsync,ca-certificates"

log() { echo "base-image: $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
	exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

dir="$(mktemp -d /tmp/ds01-base.XXXXXX)"
logf="$(mktemp /tmp/ds01-base-log.XXXXXX)"
trap 'rm -rf "$dir" "$logf"' EXIT

log "debootstrap $SUITE (minbase, +$INCLUDE) into $dir"
start=$SECONDS
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir" "$MIRROR" >"$logf" 2>&1; then
	tail -n 30 "$logf" >&2
	log "debootstrap failed"
	exit 1
fi
# Keep the image small and reproducible-ish: no apt lists or caches.
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*

log "importing as $TAG"
tar -C "$dir" -c . | docker import -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
log "done in $((SECONDS - start))s"
