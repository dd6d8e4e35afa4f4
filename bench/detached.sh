#!/usr/bin/env bash
# Gateway CPU with detached containers: starts the real gateway, has one
# user launch BENCH_DETACHED_N (50) projects whose only work is a nohup'd
# sleep, waits until container-list shows every one detached, then reads
# the gateway's CPU time (/proc/<pid>/stat) over a BENCH_DETACHED_WINDOW
# (120 s) window, once per lifecycle check_interval in
# BENCH_DETACHED_INTERVALS ("60s 5s"; 60s is the default). Between
# intervals the gateway restarts with the new config and adopts the
# containers, as after any restart. Prints one line of key=value pairs;
# core_<interval> is the gateway's CPU seconds per second (a share of one
# core; budget 0.01). bench/run.sh turns it into rows. Runs alone too
# (root, Docker; run make build first).
#
# retire_after stays at the gateway's default (10s): detached containers
# are looked at every retire_after/2, so it sets part of the cost.
#
# Env: BENCH_DETACHED_N (50), BENCH_DETACHED_WINDOW (seconds, 120),
#      BENCH_DETACHED_INTERVALS ("60s 5s"), BENCH_DETACHED_RETIRE (10s),
#      BENCH_DETACHED_PARALLEL (5), BENCH_DETACHED_UID (27000),
#      BENCH_DETACHED_PORT (first free from 2299), BENCH_DETACHED_LOG (a
#      path to keep the gateway's log at), BENCH_BIN, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "$0")/.."
N="${BENCH_DETACHED_N:-50}"
WINDOW="${BENCH_DETACHED_WINDOW:-120}"
INTERVALS="${BENCH_DETACHED_INTERVALS:-60s 5s}"
RETIRE="${BENCH_DETACHED_RETIRE:-10s}"
PARALLEL="${BENCH_DETACHED_PARALLEL:-5}"
BUID="${BENCH_DETACHED_UID:-27000}"
BIN="${BENCH_BIN:-$PWD/bin/ds01-gateway}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"

BENCH_NAME=detached
# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_checks
bench_port BENCH_DETACHED_PORT 2299 2399

TMP="$(mktemp -d /tmp/ds01-bench-detached.XXXXXX)"
GW_PID=
cleanup() {
	set +e
	gw_stop
	[ -n "${BENCH_DETACHED_LOG:-}" ] && cp "$TMP/gw.log" "$BENCH_DETACHED_LOG"
	bench_remove_user "$BUID"
	bench_remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ssh-keygen -q -t ed25519 -N '' -C bench -f "$TMP/key"
bench_ssh_opts "$TMP/key"

# DS01's resource-limits.yaml format: room for N small containers.
bench_limits "max_containers_per_user: $((N + 10))"

write_config() { # check_interval
	bench_config "retire_after: $RETIRE" "lifecycle:" "  check_interval: $1"
}

start_gw() { # check_interval
	write_config "$1"
	echo "=== serve, check_interval $1 ($(date +%T)) ===" >>"$TMP/gw.log"
	gw_start
}

# detached_count: containers container-list shows as detached.
detached_count() {
	ssh "${SSH_OPTS[@]}" ds01@127.0.0.1 container-list --format json 2>>"$TMP/client.log" |
		grep -c '"detached": true' || true
}

wait_detached() { # timeout_s
	local n=0 end=$((SECONDS + $1))
	while [ "$SECONDS" -lt "$end" ]; do
		n=$(detached_count)
		[ "$n" -ge "$N" ] && return 0
		sleep 2
	done
	tail -n 30 "$TMP/gw.log" >&2
	die "only $n of $N containers detached after $1 s"
}

first=${INTERVALS%% *}
write_config "$first"
"$BIN" user add bench --uid "$BUID" --gid "$BUID" --key-file "$TMP/key.pub" --config "$TMP/gw.yaml" >/dev/null
start_gw "$first"

log "launching $N detached projects, $PARALLEL at a time"
# One login per project, run by xargs: the options baked into a script.
{
	echo '#!/bin/sh'
	printf 'ssh'
	printf " '%s'" "${SSH_OPTS[@]}"
	printf ' "$1@127.0.0.1" %s </dev/null >>%s 2>&1 || { echo "bench: detached: ssh $1 failed" >&2; exit 1; }\n' \
		"'nohup sleep 100000 >/dev/null 2>&1 &'" "'$TMP/client.log'"
} >"$TMP/launch"
chmod +x "$TMP/launch"
t0=$SECONDS
seq 1 "$N" | sed 's/^/p/' | xargs -P "$PARALLEL" -n 1 "$TMP/launch" ||
	{ tail -n 30 "$TMP/client.log" "$TMP/gw.log" >&2; die "launching the projects failed"; }
LAUNCH_S=$((SECONDS - t0))
running=$(docker ps -q --filter "label=ds01.uid=$BUID" | wc -l)
[ "$running" = "$N" ] || die "$running of $N containers run after the launch"
log "launched $N containers in $LAUNCH_S s"

out="containers=$N launch_s=$LAUNCH_S window_s=$WINDOW retire_after=$RETIRE"
CLK_TCK=$(getconf CLK_TCK)
for iv in $INTERVALS; do
	if [ -z "$GW_PID" ]; then
		start_gw "$iv"
	fi
	wait_detached 180
	# Let the start (adoption, the first sweep's inspects) settle.
	sleep 5
	log "check_interval $iv: $N detached; measuring for $WINDOW s"
	a=$(cpu_ticks "$GW_PID")
	sleep "$WINDOW"
	b=$(cpu_ticks "$GW_PID")
	n=$(detached_count)
	[ "$n" -ge "$N" ] || die "only $n of $N containers still detached after the window"
	core=$(awk -v d=$((b - a)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN {printf "%.5f", d/hz/w}')
	log "check_interval $iv: $((b - a)) ticks in $WINDOW s: $(awk -v c="$core" 'BEGIN {printf "%.3f", c*100}') % of a core"
	out="$out core_$iv=$core"
	gw_stop # the next interval's gateway adopts the containers
done

# The lifecycle's complaints during the run, for the report.
warns=$(grep -c -E 'level=(WARN|ERROR)' "$TMP/gw.log" || true)
if [ "$warns" != 0 ]; then
	log "the gateway logged $warns warnings or errors:"
	grep -E 'level=(WARN|ERROR)' "$TMP/gw.log" | sort | uniq -c | sort -rn | head -n 10 >&2
fi
echo "$out gw_warnings=$warns"
