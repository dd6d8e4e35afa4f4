#!/usr/bin/env bash
# Gateway cost of many idle sessions: starts the real gateway, times
# BENCH_SESSIONS_LOGINS warm logins against it while one session is open
# (the idle gateway), then has BENCH_SESSIONS_USERS users open
# BENCH_SESSIONS_PER_USER non-terminal `sleep` sessions each (50 x 10), waits
# until every sleep runs, and reads over BENCH_IDLE_SECS seconds the
# gateway's CPU time (/proc/<pid>/stat, and its threads' schedstat for
# nanoseconds), its context switches per second, RSS and threads, and
# dockerd's CPU time (what the gateway asks of the engine while idle).
# Then times the same warm logins again with all those sessions open.
# Prints one line of key=value pairs; bench/run.sh turns it into rows.
# Runs alone too (root, Docker; run make build first).
#
# Env: BENCH_SESSIONS_USERS (50), BENCH_SESSIONS_PER_USER (10),
#      BENCH_IDLE_SECS (the idle window, 120 s: a clock tick is 0.08 % of a
#      core over it; BENCH_SESSIONS_WINDOW is its older name), BENCH_SESSIONS_LOGINS (40),
#      BENCH_SESSIONS_PARALLEL (10 users launched at a time),
#      BENCH_SESSIONS_UID (27600: users get uids from there up),
#      BENCH_SESSIONS_PORT (first free from 2400), BENCH_SESSIONS_LOG (a
#      path to keep the gateway's log at), BENCH_SESSIONS_CONFIG (lines
#      added to the gateway's YAML config), BENCH_BIN, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "$0")/.."
USERS="${BENCH_SESSIONS_USERS:-50}"
PER="${BENCH_SESSIONS_PER_USER:-10}"
WINDOW="${BENCH_IDLE_SECS:-${BENCH_SESSIONS_WINDOW:-120}}"
LOGINS="${BENCH_SESSIONS_LOGINS:-40}"
PARALLEL="${BENCH_SESSIONS_PARALLEL:-10}"
UID0="${BENCH_SESSIONS_UID:-27600}"
BIN="${BENCH_BIN:-$PWD/bin/ds01-gateway}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
SESSIONS=$((USERS * PER))
# The sessions' command, distinctive so that counting them finds only ours.
SLEEP="sleep $((100000 + UID0))"

BENCH_NAME=sessions
# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_checks
bench_port BENCH_SESSIONS_PORT 2400 2499

TMP="$(mktemp -d /tmp/ds01-bench-sessions.XXXXXX)"
GW_PID=
CLIENTS=() # the ssh clients holding the sessions
cleanup() {
	set +e
	[ "${#CLIENTS[@]}" -gt 0 ] && kill "${CLIENTS[@]}" 2>/dev/null
	wait "${CLIENTS[@]}" 2>/dev/null
	gw_stop
	[ -n "${BENCH_SESSIONS_LOG:-}" ] && cp "$TMP/gw.log" "$BENCH_SESSIONS_LOG"
	for i in $(seq 0 $((USERS - 1))); do
		bench_remove_user $((UID0 + i))
	done
	bench_remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_limits
# Every client comes from 127.0.0.1: room for the launch's handshakes.
bench_config "max_startups: $((SESSIONS + 10))" "max_startups_per_source: $((SESSIONS + 10))" \
	"${BENCH_SESSIONS_CONFIG:-}"

log "adding $USERS users"
for i in $(seq 0 $((USERS - 1))); do
	ssh-keygen -q -t ed25519 -N '' -C "bench$i" -f "$TMP/key$i"
	"$BIN" user add "bench$i" --uid $((UID0 + i)) --key-file "$TMP/key$i.pub" --config "$TMP/gw.yaml" >/dev/null
done
gw_start

ssh_as() { # user-index command...
	local i=$1 SSH_OPTS
	shift
	bench_ssh_opts "$TMP/key$i"
	ssh "${SSH_OPTS[@]}" p@127.0.0.1 "$@"
}
running_sleeps() { pgrep -c -x -f "$SLEEP" || true; }
wait_sleeps() { # count timeout_s
	local n=0 end=$((SECONDS + $2))
	while [ "$SECONDS" -lt "$end" ]; do
		n=$(running_sleeps)
		[ "$n" -ge "$1" ] && return 0
		sleep 1
	done
	tail -n 30 "$TMP/gw.log" >&2
	die "only $n of $1 sessions run after $2 s"
}
now_us() { echo $(($(date +%s%N) / 1000)); }
# logins: LOGINS warm logins of user 0, one microsecond figure a line.
logins() {
	local s
	for _ in $(seq 1 "$LOGINS"); do
		s=$(now_us)
		ssh_as 0 true </dev/null >/dev/null 2>>"$TMP/client.log" || die "a warm login failed"
		echo $(($(now_us) - s))
	done
}
quantile() { # q: of seconds from microseconds on stdin, nearest rank
	sort -n | awk -v q="$1" '{a[NR]=$1} END {i=int(q*NR+0.999999); if (i<1) i=1; printf "%.3f", a[i]/1e6}'
}
status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$GW_PID/status"; }
# run_ns PID: nanoseconds on a CPU of all the process's live threads (schedstat).
run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
# ctx_switches PID: context switches of all its live threads so far.
ctx_switches() {
	cat /proc/"$1"/task/*/status 2>/dev/null | awk '$1 ~ /ctxt_switches:$/ {s += $2} END {printf "%.0f", s}'
}

log "idle gateway: one session open, $LOGINS warm logins"
ssh_as 0 "$SLEEP" </dev/null >/dev/null 2>&1 &
CLIENTS+=($!)
wait_sleeps 1 60
logins >"$TMP/idle.us"
sleep 2
RSS_IDLE=$(status_kib VmRSS)

log "opening $SESSIONS sessions: $USERS users x $PER, $PARALLEL users at a time"
t0=$SECONDS
for i in $(seq 0 $((USERS - 1))); do
	n=$PER
	[ "$i" = 0 ] && n=$((PER - 1)) # the holder is one of user 0's
	for _ in $(seq 1 "$n"); do
		ssh_as "$i" "$SLEEP" </dev/null >/dev/null 2>>"$TMP/client.log" &
		CLIENTS+=($!)
	done
	if [ $(((i + 1) % PARALLEL)) = 0 ]; then
		wait_sleeps $(((i + 1) * PER)) 120
	fi
done
wait_sleeps "$SESSIONS" 120
LAUNCH_S=$((SECONDS - t0))
log "$SESSIONS sessions run after $LAUNCH_S s; settling, then measuring for $WINDOW s"
sleep 5
DOCKERD=$(pgrep -x -o dockerd || true)
CLK_TCK=$(getconf CLK_TCK)
a=$(cpu_ticks "$GW_PID")
na=$(run_ns "$GW_PID")
ca=$(ctx_switches "$GW_PID")
[ -n "$DOCKERD" ] && da=$(cpu_ticks "$DOCKERD")
sleep "$WINDOW"
b=$(cpu_ticks "$GW_PID")
nb=$(run_ns "$GW_PID")
cb=$(ctx_switches "$GW_PID")
[ -n "$DOCKERD" ] && db=$(cpu_ticks "$DOCKERD")
LOAD=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
RSS=$(status_kib VmRSS)
THREADS=$(status_kib Threads)
n=$(running_sleeps)
[ "$n" -ge "$SESSIONS" ] || die "only $n of $SESSIONS sessions still run after the window"
core=$(awk -v d=$((b - a)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN {printf "%.5f", d/hz/w}')
# Threads that ended within the window take their schedstat with them:
# ns_core is a lower bound, the ticks are the figure.
ns_core=$(awk -v d=$((nb - na)) -v w="$WINDOW" 'BEGIN {printf "%.5f", d/1e9/w}')
csw=$(awk -v d=$((cb - ca)) -v w="$WINDOW" 'BEGIN {printf "%.1f", d/w}')
dcore=na
[ -n "$DOCKERD" ] && dcore=$(awk -v d=$((db - da)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN {printf "%.5f", d/hz/w}')
log "gateway $((b - a)) ticks in $WINDOW s ($core of a core; schedstat $ns_core), $csw context switches/s, dockerd $dcore;" \
	"RSS $((RSS / 1024)) MiB, $THREADS threads; load $LOAD"

log "$LOGINS warm logins with $SESSIONS sessions open"
logins >"$TMP/busy.us"

per=$(awk -v r="$RSS" -v i="$RSS_IDLE" -v n="$SESSIONS" 'BEGIN {printf "%.3f", (r-i)/1024/n}')
echo "sessions=$SESSIONS users=$USERS launch_s=$LAUNCH_S window_s=$WINDOW core=$core ns_core=$ns_core csw_per_s=$csw dockerd_core=$dcore load=$LOAD" \
	"rss_mib=$((RSS / 1024)) rss_idle_mib=$((RSS_IDLE / 1024)) rss_per_session_mib=$per threads=$THREADS" \
	"login_idle_p50=$(quantile 0.5 <"$TMP/idle.us") login_idle_p99=$(quantile 0.99 <"$TMP/idle.us")" \
	"login_p50=$(quantile 0.5 <"$TMP/busy.us") login_p99=$(quantile 0.99 <"$TMP/busy.us")"
