#!/usr/bin/env bash
# Build the minimal Debian base image the gateway and its tests use, from
# what this machine can reach (Debian mirrors only): debootstrap + docker import.
# Cached by tag and recipe: if the image exists and was made from this
# package list, this is a no-op; a changed list rebuilds it once.
set -euo pipefail

TAG="${1:-ds01-base:bookworm}"
SUITE="${DS01_BASE_SUITE:-bookworm}"
MIRROR="${DS01_BASE_MIRROR:-http://deb.debian.org/debian}"
# What the gateway needs (netcat, procps, rsync, ca-certificates), then
# DS01's standard tools, which its image template installs: every new
# project has git without an apt step.
INCLUDE="netcat-openbsd,procps,rsync,ca-certificates,git,curl,wget,vim,htop"
# The recipe's fingerprint, kept as a label on the image: a changed list
# rebuilds the image once on every machine that has the old one.
RECIPE="$(printf '%s\n' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-16)"
LABEL=org.ds01.base-recipe  # not ds01.*: those belong to the gateway (build_check.go)

log() { echo "base-image: $*" >&2; }

if have="$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$TAG" 2>/dev/null)"; then
	if [ "$have" = "$RECIPE" ]; then
		exit 0
	fi
	log "$TAG was made from another package list ($have, now $RECIPE): rebuilding"
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
tar -C "$dir" -c . | docker import -c 'CMD ["/bin/bash"]' -c "LABEL $LABEL=$RECIPE" - "$TAG" >/dev/null
log "done in $((SECONDS - start))s, $(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1/1048576}')"
