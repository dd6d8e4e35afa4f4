#!/usr/bin/env bash
# Lifecycle sampling cost against real containers: starts BENCH_USAGE_N
# (100) idle containers like the gateway's (docker-init, sleep infinity),
# then times sweeps of the gateway's own Sampler (session/docker Usage:
# cgroup files, no engine API) with bench/usagebench. Prints one line of
# key=value pairs in seconds (sweep_cpu: CPU time of one sweep, averaged);
# bench/run.sh turns it into a row. Runs alone too (root, Docker).
#
# Env: BENCH_USAGE_N (100), BENCH_USAGE_SWEEPS (20), BASE_IMAGE, GO.
set -euo pipefail

cd "$(dirname "$0")/.."
N="${BENCH_USAGE_N:-100}"
SWEEPS="${BENCH_USAGE_SWEEPS:-20}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
LABEL="ds01.bench=usage-$$"

BENCH_NAME=usage
# shellcheck source=bench/lib.sh
. bench/lib.sh

TMP="$(mktemp -d /tmp/ds01-bench-usage.XXXXXX)"
cleanup() {
	set +e
	ids=$(docker ps -a -q --filter "label=$LABEL")
	[ -n "$ids" ] && docker rm -f $ids >/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${GO:-go}" build -o "$TMP/usagebench" ./bench/usagebench

log "starting $N idle containers"
# --network none: the sweep reads cgroups, not networks, and 100 veths
# would only slow the start.
seq 1 "$N" | xargs -P 4 -I{} docker run -d --init --network none --log-driver none \
	--label "$LABEL" "$BASE_IMAGE" sleep infinity >/dev/null
running=$(docker ps -q --filter "label=$LABEL" | wc -l)
[ "$running" = "$N" ] || die "only $running of $N containers run"

log "$SWEEPS sweeps of $N containers"
"$TMP/usagebench" --label "$LABEL" --sweeps "$SWEEPS"
