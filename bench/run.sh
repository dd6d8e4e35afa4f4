#!/usr/bin/env bash
# Benchmark DS01 Gateway against its baselines, all measured in this one run:
#   cold   ssh proj@gw true, no container up, the project's network holder up (a repeated cold
#          login: what a user gets after the first)   vs  docker run --rm <same image> true
#   cold-first  the same with no holder (network_linger: 0, as a first login or one after the
#          holder's linger)                    vs  docker run --rm <same image> true
#   warm   ssh proj@gw true, container up      vs  ssh to a private OpenSSH sshd
#   stream 1 GiB of zeros to the client        vs  the same through that sshd
#   sftp   1 GiB put and get through sftp -b   vs  the same through that sshd's sftp-server
#   cold-20ms  cold login through a relay adding 10 ms each way (bench/delayrelay)
#          vs  OpenSSH's ssh true through the same relay plus docker run --rm
#   sweep100  CPU time of one lifecycle sampling sweep of 100 real containers vs the 50 ms budget
#   detached50  the gateway's share of one core with 50 detached containers vs 1 % (bench/detached.sh)
#   sessions500  500 idle sessions (50 users x 10): gateway CPU vs 0.5 % of a core, warm login p99 vs
#                2x the idle gateway's, RSS per session vs 0.5 MiB (bench/sessions.sh)
#   small-*  10,000 files of 4 KiB put and get by scp -r, scp -O -r, sftp put/get -r and rsync -a vs
#            the same through OpenSSH (bench/smallfiles.sh; informational, no target)
#   kube-cold, kube-warm  logins on the Kubernetes runtime vs kubectl run / kubectl exec of the same
#            image on the same cluster, when one answers (bench/kube.sh; informational, no target)
# Prints medians and ratios beside the targets. Run via `make bench` (root).
#
# Env: BENCH_N (default 10), BENCH_STREAM_N (3), BENCH_SFTP_N (3), BENCH_GW_PORT (2298),
#      BENCH_SSHD_PORT (2223), BENCH_RELAY_GW_PORT (2297), BENCH_RELAY_SSHD_PORT (2224),
#      BENCH_STRICT=1 (exit 1 when a target is missed),
#      BENCH_BIN (the gateway binary; compare two builds with it), BENCH_LIFECYCLE=0 (skip sweep100
#      and detached50, the slow rows that do not touch the login path), BENCH_SESSIONS=0 (skip
#      sessions500; also skipped with BENCH_LIFECYCLE=0), BENCH_SMALL=0 (skip the small-files rows),
#      BENCH_COLD_ONLY=1 (the cold and cold-first rows alone, then stop).
set -euo pipefail

cd "$(dirname "$0")/.."
N="${BENCH_N:-10}"
STREAM_N="${BENCH_STREAM_N:-3}"
SFTP_N="${BENCH_SFTP_N:-3}"
GW_PORT="${BENCH_GW_PORT:-2298}"
SSHD_PORT="${BENCH_SSHD_PORT:-2223}"
BIN="${BENCH_BIN:-$PWD/bin/ds01-gateway}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
BUID=30000
PROJ=proj
IMAGE="ds01-$BUID/$PROJ:latest"
STREAM_BYTES=1073741824

BENCH_NAME=run
# shellcheck source=bench/lib.sh
. bench/lib.sh
# This script's own log lines keep their short prefix.
log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the gateway needs it; sshd runs privately as root)"
[ -x "$BIN" ] || die "$BIN not found: run make build"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE missing: run make base-image"
if [ ! -x /usr/sbin/sshd ]; then
	log "installing openssh-server (its service is not started)"
	apt-get update -qq
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
	rm -f /usr/sbin/policy-rc.d
fi

TMP="$(mktemp -d /tmp/ds01-bench.XXXXXX)"
GW_PID= SSHD_PID= HOLD_PID=
RELAY_PIDS=
cleanup() {
	set +e
	[ -n "$RELAY_PIDS" ] && kill $RELAY_PIDS 2>/dev/null
	[ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
	[ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
	ids=$(docker ps -a -q --filter "label=ds01.uid=$BUID")
	[ -n "$ids" ] && docker rm -f $ids >/dev/null
	imgs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^ds01-$BUID/")
	[ -n "$imgs" ] && docker rmi -f $imgs >/dev/null
	docker network rm "ds01-u$BUID" >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


port_free "$GW_PORT" || die "port $GW_PORT in use (set BENCH_GW_PORT)"
port_free "$SSHD_PORT" || die "port $SSHD_PORT in use (set BENCH_SSHD_PORT)"

# --- the client: identical options for both servers, default ciphers ---
ssh-keygen -q -t ed25519 -N '' -C bench -f "$TMP/key"
SSH_OPTS=(-F /dev/null -i "$TMP/key" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
	-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes)
gw_ssh() { ssh "${SSH_OPTS[@]}" -p "$GW_PORT" -l "$PROJ" 127.0.0.1 "$@"; }
sshd_ssh() { ssh "${SSH_OPTS[@]}" -p "$SSHD_PORT" -l root 127.0.0.1 "$@"; }
GCM=(-c aes128-gcm@openssh.com)
gw_gcm() { ssh "${SSH_OPTS[@]}" "${GCM[@]}" -p "$GW_PORT" -l "$PROJ" 127.0.0.1 "$@"; }
sshd_gcm() { ssh "${SSH_OPTS[@]}" "${GCM[@]}" -p "$SSHD_PORT" -l root 127.0.0.1 "$@"; }

# --- the gateway under test ---
cat >"$TMP/gw.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
data_dir: $TMP/data
workspace_root: $TMP/ws/{user}
base_image: $BASE_IMAGE
retire_after: 0s
command_login: ds01
EOF
"$BIN" user add bench --uid "$BUID" --gid "$BUID" --key-file "$TMP/key.pub" --config "$TMP/gw.yaml" >/dev/null
PORT=$GW_PORT
gw_start

# --- a private OpenSSH sshd: own host key, config and authorized_keys ---
sshd_start "$SSHD_PORT"

# --- helpers ---
# The project's container, not its network holder (whose ds01.role is set).
containers() { docker ps -a -q --filter "label=ds01.uid=$BUID" --filter "label=ds01.project=$PROJ" --filter "label=ds01.role="; }
holder() { docker ps -q --filter "label=ds01.uid=$BUID" --filter "label=ds01.project=$PROJ" --filter "label=ds01.role=netholder"; }
# wait_for CMD MSG: until CMD succeeds, for up to 30 s, else die with MSG.
wait_for() {
	for _ in $(seq 1 300); do
		eval "$1" && return 0
		sleep 0.1
	done
	die "$2"
}
wait_holder() { wait_for '[ -n "$(holder)" ]' "no network holder 30s after the first login"; }
wait_gone() { wait_for '[ -z "$(containers)" ]' "container still there 30s after logout (retire_after 0s)"; }
wait_running() { wait_for '[ -n "$(docker ps -q --filter "label=ds01.uid=$BUID" --filter "label=ds01.project=$PROJ")" ]' "no running container 30s after login"; }
stream() { "$@" "head -c $STREAM_BYTES /dev/zero"; }
check_stream() { # once, untimed: a stream cut short would look fast
	local n
	n=$(stream "$@" | wc -c)
	[ "$n" = "$STREAM_BYTES" ] || die "stream through $1: got $n bytes, want $STREAM_BYTES"
}

log "first login (builds $IMAGE; not timed)"
gw_ssh true
sshd_ssh true
docker run --rm "$IMAGE" true

log "cold: $N x ssh (network holder up) vs docker run"
wait_holder
cold_gw=() cold_docker=() cold_usernet=()
for _ in $(seq 1 "$N"); do
	wait_gone
	cold_gw+=("$(time_us gw_ssh true)")
	wait_gone # the gateway's removal must not overlap the docker run
	cold_docker+=("$(time_us docker run --rm "$IMAGE" true)")
	# The gateway puts each user on a network of their own; that costs
	# Docker's embedded DNS at start. Measured for the report, no target.
	cold_usernet+=("$(time_us docker run --rm --network "ds01-u$BUID" "$IMAGE" true)")
done
wait_gone
[ -n "$(holder)" ] || die "the network holder went during the cold row"

# --- cold-first: no holder (network_linger 0 removes it at start): the
# first cold login of a project, or one after its holder's linger ---
log "cold-first: $N x ssh (no network holder) vs docker run"
gw_stop
cp "$TMP/gw.yaml" "$TMP/gw-holders.yaml"
echo "network_linger: 0s" >>"$TMP/gw.yaml"
gw_start
[ -z "$(holder)" ] || die "network_linger 0 left the holder"
first_gw=() first_docker=()
for _ in $(seq 1 "$N"); do
	wait_gone
	first_gw+=("$(time_us gw_ssh true)")
	wait_gone
	first_docker+=("$(time_us docker run --rm "$IMAGE" true)")
done
wait_gone
if [ "${BENCH_COLD_ONLY:-0}" = 1 ]; then
	cold_report() { # name gw[] docker[]
		awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%-10s %.3fs  docker-run %.3fs  %.2fx\n", n, a, b, a/b}'
	}
	echo "DS01 Gateway bench, cold rows only: medians, N=$N, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
	cold_report cold "$(printf '%s\n' "${cold_gw[@]}" | median)" "$(printf '%s\n' "${cold_docker[@]}" | median)"
	cold_report cold-first "$(printf '%s\n' "${first_gw[@]}" | median)" "$(printf '%s\n' "${first_docker[@]}" | median)"
	cold_report "(usernet)" "$(printf '%s\n' "${cold_gw[@]}" | median)" "$(printf '%s\n' "${cold_usernet[@]}" | median)"
	exit 0
fi
gw_stop
cp "$TMP/gw-holders.yaml" "$TMP/gw.yaml"
gw_start
gw_ssh true # makes the holder again, for the cold-20ms row
wait_gone
wait_holder

# --- cold-20ms: the same over a link with a 20 ms round trip ---
# The kernel has no netem qdisc: bench/delayrelay holds every chunk 10 ms
# each way. The baseline is what a user would otherwise wait for: an
# OpenSSH login through the same relay, then docker run.
RELAY_GW_PORT="${BENCH_RELAY_GW_PORT:-2297}"
RELAY_SSHD_PORT="${BENCH_RELAY_SSHD_PORT:-2224}"
port_free "$RELAY_GW_PORT" || die "port $RELAY_GW_PORT in use (set BENCH_RELAY_GW_PORT)"
port_free "$RELAY_SSHD_PORT" || die "port $RELAY_SSHD_PORT in use (set BENCH_RELAY_SSHD_PORT)"
"${GO:-go}" build -o "$TMP/delayrelay" ./bench/delayrelay
for p in "$RELAY_GW_PORT:$GW_PORT" "$RELAY_SSHD_PORT:$SSHD_PORT"; do
	"$TMP/delayrelay" --listen "127.0.0.1:${p%%:*}" --target "127.0.0.1:${p##*:}" --delay 10ms >/dev/null 2>>"$TMP/relay.log" &
	RELAY_PIDS="$RELAY_PIDS $!"
	wait_port "${p%%:*}" "$!" "$TMP/relay.log"
done
gw_ssh20() { ssh "${SSH_OPTS[@]}" -p "$RELAY_GW_PORT" -l "$PROJ" 127.0.0.1 "$@"; }
sshd_ssh20() { ssh "${SSH_OPTS[@]}" -p "$RELAY_SSHD_PORT" -l root 127.0.0.1 "$@"; }
log "cold-20ms: $N x ssh through the relay vs OpenSSH through it plus docker run"
cold20_gw=() cold20_base=() warm20_gw=() warm20_sshd=()
for _ in $(seq 1 "$N"); do
	wait_gone
	cold20_gw+=("$(time_us gw_ssh20 true)")
	wait_gone
	a=$(time_us sshd_ssh20 true)
	b=$(time_us docker run --rm "$IMAGE" true)
	cold20_base+=("$((a + b))")
done
wait_gone
ssh "${SSH_OPTS[@]}" -p "$GW_PORT" -l "$PROJ" 127.0.0.1 sleep 600 </dev/null >/dev/null 2>&1 &
HOLD_PID=$!
wait_running
for _ in $(seq 1 "$N"); do
	warm20_gw+=("$(time_us gw_ssh20 true)")
	warm20_sshd+=("$(time_us sshd_ssh20 true)")
done
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
HOLD_PID=
kill $RELAY_PIDS 2>/dev/null || true
RELAY_PIDS=
wait_gone

log "warm: $N x ssh vs OpenSSH"
# ssh itself in the background (not a subshell), so that killing HOLD_PID hangs up.
ssh "${SSH_OPTS[@]}" -p "$GW_PORT" -l "$PROJ" 127.0.0.1 sleep 600 </dev/null >/dev/null 2>&1 &
HOLD_PID=$!
wait_running
warm_gw=() warm_sshd=()
for _ in $(seq 1 "$N"); do
	warm_gw+=("$(time_us gw_ssh true)")
	warm_sshd+=("$(time_us sshd_ssh true)")
done

log "stream: $STREAM_N x 1 GiB vs OpenSSH"
check_stream gw_ssh
check_stream sshd_ssh
stream_gw=() stream_sshd=() gcm_gw=() gcm_sshd=()
# CPU of each side per stream, as for sftp below: the process and its
# reaped children (sshd's session process and shell; the gateway's own
# work, the container's process being Docker's).
stream_cpu_gw=0 stream_cpu_sshd=0
for _ in $(seq 1 "$STREAM_N"); do
	c0=$(cpu_ticks "$GW_PID")
	stream_gw+=("$(time_us stream gw_ssh)")
	stream_cpu_gw=$((stream_cpu_gw + $(cpu_ticks "$GW_PID") - c0))
	c0=$(cpu_ticks "$SSHD_PID")
	stream_sshd+=("$(time_us stream sshd_ssh)")
	stream_cpu_sshd=$((stream_cpu_sshd + $(cpu_ticks "$SSHD_PID") - c0))
	# The same cipher on both sides, to separate the cipher choice from
	# the data path. No target.
	gcm_gw+=("$(time_us stream gw_gcm)")
	gcm_sshd+=("$(time_us stream sshd_gcm)")
done
# --- pty: 100 MiB of output through a terminal session (ssh -tt) vs OpenSSH's ---
# The container is still held. CPU in clock ticks as for sftp below: the
# gateway alone (the session's process runs in the container), sshd's
# listener with its reaped children (per-connection sshd, the shell and its
# head: the command's own CPU is in sshd's figure), and dockerd's, which
# the engine's attach relay used to load.
PTY_BYTES=104857600
gw_pty() { ssh "${SSH_OPTS[@]}" -tt -p "$GW_PORT" -l "$PROJ" 127.0.0.1 "head -c $PTY_BYTES /dev/zero" </dev/null; }
sshd_pty() { ssh "${SSH_OPTS[@]}" -tt -p "$SSHD_PORT" -l root 127.0.0.1 "head -c $PTY_BYTES /dev/zero" </dev/null; }
for f in gw_pty sshd_pty; do # once, untimed: output cut short would look fast
	n=$("$f" 2>>"$TMP/client.log" | wc -c)
	[ "$n" = "$PTY_BYTES" ] || die "pty through $f: got $n bytes, want $PTY_BYTES"
done
log "pty: $STREAM_N x ssh -tt 100 MiB vs OpenSSH"
DOCKERD_PID=$(pidof dockerd 2>/dev/null | awk '{print $1}')
pty_gw=() pty_sshd=() pty_cpu_gw=0 pty_cpu_sshd=0 pty_cpu_dockerd=0
for _ in $(seq 1 "$STREAM_N"); do
	c0=$(cpu_ticks "$GW_PID") d0=$([ -n "$DOCKERD_PID" ] && cpu_ticks "$DOCKERD_PID" || echo 0)
	pty_gw+=("$(time_us gw_pty)")
	pty_cpu_gw=$((pty_cpu_gw + $(cpu_ticks "$GW_PID") - c0))
	pty_cpu_dockerd=$((pty_cpu_dockerd + $([ -n "$DOCKERD_PID" ] && cpu_ticks "$DOCKERD_PID" || echo 0) - d0))
	c0=$(cpu_ticks "$SSHD_PID")
	pty_sshd+=("$(time_us sshd_pty)")
	pty_cpu_sshd=$((pty_cpu_sshd + $(cpu_ticks "$SSHD_PID") - c0))
done
pty_report() { # called from the report below
	row pty "$(printf '%s\n' "${pty_gw[@]}" | median)" "openssh" "$(printf '%s\n' "${pty_sshd[@]}" | median)" 1.00
	awk -v g="$pty_cpu_gw" -v s="$pty_cpu_sshd" -v d="$pty_cpu_dockerd" -v hz="$(getconf CLK_TCK)" -v n="$STREAM_N" -v b="$PTY_BYTES" 'BEGIN {
		f = hz * n * b / 1073741824
		printf "(pty: ssh -tt head -c 100 MiB; CPU s/GiB: ds01 %.2f (dockerd meanwhile %.2f) vs openssh %.2f incl. the command)\n", g/f, d/f, s/f }'
}

cipher() { # port user: the cipher a default client negotiates
	ssh "${SSH_OPTS[@]}" -v -p "$1" -l "$2" 127.0.0.1 true 2>&1 |
		sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -n 1
}
GW_CIPHER=$(cipher "$GW_PORT" "$PROJ")
SSHD_CIPHER=$(cipher "$SSHD_PORT" root)

# --- sftp: 1 GiB put and get, the same client options on both sides ---
# No project container is needed: the holder goes first.
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
HOLD_PID=
wait_gone
SFTP_BYTES=1073741824
GW_WS="$TMP/ws/bench/$PROJ" # workspace_root $TMP/ws/{user}, user bench
SSHD_DIR="$TMP/sshd-files"
mkdir -p "$SSHD_DIR"
log "sftp: making a 1 GiB random file"
head -c "$SFTP_BYTES" /dev/urandom >"$TMP/big.bin"
gw_sftp() { sftp "${SSH_OPTS[@]}" -P "$GW_PORT" -b "$1" "$PROJ@127.0.0.1"; }
sshd_sftp() { sftp "${SSH_OPTS[@]}" -P "$SSHD_PORT" -b "$1" root@127.0.0.1; }
# Remote paths: the gateway's start directory is /workspace; sshd's is
# root's home, so it gets an absolute path on the same disk.
printf 'put %s big.bin\n' "$TMP/big.bin" >"$TMP/gw-put.batch"
printf 'get big.bin %s\n' "$TMP/got.bin" >"$TMP/gw-get.batch"
printf 'put %s %s\n' "$TMP/big.bin" "$SSHD_DIR/big.bin" >"$TMP/sshd-put.batch"
printf 'get %s %s\n' "$SSHD_DIR/big.bin" "$TMP/got.bin" >"$TMP/sshd-get.batch"
size_of() { stat -c %s "$1" 2>/dev/null || echo missing; }
check_sftp() { # file: untimed check after a timed run; a short copy would look fast
	local n
	n=$(size_of "$1")
	[ "$n" = "$SFTP_BYTES" ] || die "sftp: $1 has $n bytes, want $SFTP_BYTES"
}
log "sftp: $SFTP_N x 1 GiB put and get vs OpenSSH sftp-server ($SFTP_SERVER)"
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$GW_PID/status"; }
HWM_BEFORE=$(hwm_kib)
put_gw=() put_sshd=() get_gw=() get_sshd=()
# CPU of each side, in clock ticks (cpu_ticks, bench/lib.sh): the process and its
# reaped children (the gateway's transfer child; sshd's session process
# and sftp-server).
declare -A cpu=([put_gw]=0 [put_sshd]=0 [get_gw]=0 [get_sshd]=0)
cpu_us() { # key pid CMD...: time_us CMD, adding its CPU to cpu[key]
	local k=$1 p=$2 c0 us
	shift 2
	c0=$(cpu_ticks "$p")
	us=$(time_us "$@")
	cpu[$k]=$((cpu[$k] + $(cpu_ticks "$p") - c0))
	echo "$us"
}
for i in $(seq 1 "$SFTP_N"); do
	rm -f "$GW_WS/big.bin" "$SSHD_DIR/big.bin"
	sync
	cpu_us put_gw "$GW_PID" gw_sftp "$TMP/gw-put.batch" >"$TMP/us"
	put_gw+=("$(<"$TMP/us")")
	check_sftp "$GW_WS/big.bin"
	sync
	cpu_us put_sshd "$SSHD_PID" sshd_sftp "$TMP/sshd-put.batch" >"$TMP/us"
	put_sshd+=("$(<"$TMP/us")")
	check_sftp "$SSHD_DIR/big.bin"
	rm -f "$TMP/got.bin"
	sync
	cpu_us get_gw "$GW_PID" gw_sftp "$TMP/gw-get.batch" >"$TMP/us"
	get_gw+=("$(<"$TMP/us")")
	check_sftp "$TMP/got.bin"
	if [ "$i" = 1 ]; then
		cmp -s "$TMP/big.bin" "$TMP/got.bin" || die "sftp: the file got back through the gateway differs"
	fi
	rm -f "$TMP/got.bin"
	sync
	cpu_us get_sshd "$SSHD_PID" sshd_sftp "$TMP/sshd-get.batch" >"$TMP/us"
	get_sshd+=("$(<"$TMP/us")")
	check_sftp "$TMP/got.bin"
	rm -f "$TMP/got.bin"
done
HWM_AFTER=$(hwm_kib)
[ -z "$(containers)" ] || die "sftp left a project container behind"
rm -f "$TMP/big.bin" "$GW_WS/big.bin" "$SSHD_DIR/big.bin" "$TMP/got.bin"

# --- many small files: a gateway and sshd of its own (bench/smallfiles.sh) ---
SMALL_OUT=""
if [ "${BENCH_SMALL:-1}" = 1 ]; then
	SMALL_OUT=$(BENCH_BIN="$BIN" bench/smallfiles.sh) || die "bench/smallfiles.sh failed"
fi

# --- lifecycle sampling: cgroup reads of 100 real containers (bench/usage.sh) ---
LIFECYCLE="${BENCH_LIFECYCLE:-1}"
USAGE="" DETACHED=""
if [ "$LIFECYCLE" = 1 ]; then
	USAGE=$(bench/usage.sh) || die "bench/usage.sh failed"
fi
usage_kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $USAGE"; }

# --- a gateway of its own with 50 detached containers (bench/detached.sh) ---
if [ "$LIFECYCLE" = 1 ]; then
	DETACHED=$(bench/detached.sh) || die "bench/detached.sh failed"
fi
detached_kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $DETACHED"; }

# --- a gateway of its own with 500 idle sessions (bench/sessions.sh) ---
SESSIONS_ROW=0 SESSIONS_OUT=""
[ "$LIFECYCLE" = 1 ] && [ "${BENCH_SESSIONS:-1}" = 1 ] && SESSIONS_ROW=1
if [ "$SESSIONS_ROW" = 1 ]; then
	SESSIONS_OUT=$(bench/sessions.sh) || die "bench/sessions.sh failed"
fi
sessions_kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $SESSIONS_OUT"; }

# --- the Kubernetes runtime vs kubectl, where a cluster answers (bench/kube.sh) ---
KUBE_OUT=""
if [ "${BENCH_KUBE:-1}" = 1 ]; then
	KUBE_OUT=$(BENCH_BIN="$BIN" BENCH_KUBE_N="${BENCH_KUBE_N:-$N}" bench/kube.sh) || die "bench/kube.sh failed"
fi

# --- report ---
fail=0
row() { # name ours baseline-name baseline target-ratio
	local ratio ok
	ratio=$(awk -v a="$2" -v b="$4" 'BEGIN {printf "%.2f", a/b}')
	ok=$(awk -v r="$ratio" -v t="$5" 'BEGIN {print (r <= t) ? "ok" : "MISS"}')
	[ "$ok" = ok ] || fail=1
	printf '%-16s %9ss   %-11s %9ss %7sx   <= %-5s %s\n' "$1" "$2" "$3" "$4" "$ratio" "$5" "$ok"
}
echo
echo "DS01 Gateway bench: medians, N=$N (stream N=$STREAM_N, sftp N=$SFTP_N, 1 GiB), $(nproc) cores, $(ssh -V 2>&1 | cut -d, -f1)"
printf '%-16s %10s   %-11s %10s %8s   %-8s\n' metric ds01 baseline "" ratio target
row cold "$(printf '%s\n' "${cold_gw[@]}" | median)" "docker-run" "$(printf '%s\n' "${cold_docker[@]}" | median)" 1.15
row cold-first "$(printf '%s\n' "${first_gw[@]}" | median)" "docker-run" "$(printf '%s\n' "${first_docker[@]}" | median)" 1.30
row warm "$(printf '%s\n' "${warm_gw[@]}" | median)" "openssh" "$(printf '%s\n' "${warm_sshd[@]}" | median)" 1.00
row stream "$(printf '%s\n' "${stream_gw[@]}" | median)" "openssh" "$(printf '%s\n' "${stream_sshd[@]}" | median)" 1.25
row sftp-put "$(printf '%s\n' "${put_gw[@]}" | median)" "openssh" "$(printf '%s\n' "${put_sshd[@]}" | median)" 1.11
row sftp-get "$(printf '%s\n' "${get_gw[@]}" | median)" "openssh" "$(printf '%s\n' "${get_sshd[@]}" | median)" 1.11
row cold-20ms "$(printf '%s\n' "${cold20_gw[@]}" | median)" "ssh+dockrun" "$(printf '%s\n' "${cold20_base[@]}" | median)" 1.00
pty_report
if [ "$LIFECYCLE" = 1 ]; then
	row sweep100 "$(usage_kv sweep_cpu)" "budget" 0.050 1.00
	for iv in ${BENCH_DETACHED_INTERVALS:-60s 5s}; do
		row "detached$(detached_kv containers) ($iv)" "$(detached_kv "core_$iv")" "budget" 0.010 1.00
	done
fi
if [ "$SESSIONS_ROW" = 1 ]; then
	ns=$(sessions_kv sessions)
	row "sessions$ns cpu" "$(sessions_kv core)" "budget" 0.005 1.00
	row "sessions$ns p99" "$(sessions_kv login_p99)" "idle-p99" "$(sessions_kv login_idle_p99)" 2.00
	row "sessions$ns rss" "$(sessions_kv rss_per_session_mib)" "budget" 0.5 1.00
fi
echo "(stream target: throughput >= 0.8x OpenSSH, i.e. time ratio <= 1.25; default ciphers: ds01 $GW_CIPHER, openssh $SSHD_CIPHER)"
echo "(cold-20ms: through bench/delayrelay, 10 ms each way; baseline: OpenSSH ssh true through the same relay plus docker run --rm, summed per run)"
echo "(sftp targets: throughput >= 0.9x OpenSSH's sftp-server, i.e. time ratio <= 1.11)"
[ "$LIFECYCLE" = 1 ] && echo "(sweep100: gateway CPU time of one sampling sweep of $(usage_kv containers) idle containers, mean of ${BENCH_USAGE_SWEEPS:-20}; budget 50 ms)"
[ "$LIFECYCLE" = 1 ] && echo "(detached$(detached_kv containers): gateway CPU seconds per second, i.e. share of one core, over $(detached_kv window_s) s with $(detached_kv containers) detached containers, lifecycle check_interval as named (60s is the default), retire_after $(detached_kv retire_after); budget 1 % of a core; $(detached_kv launch_s) s to launch them; $(detached_kv gw_warnings) gateway warnings)"
[ "$SESSIONS_ROW" = 1 ] && echo "(sessions$(sessions_kv sessions): $(sessions_kv users) users' idle non-terminal sessions; cpu: gateway share of one core over $(sessions_kv window_s) s (dockerd's: $(sessions_kv dockerd_core)); p99: warm login with them open vs the same gateway with one session (p50 $(sessions_kv login_p50) s vs $(sessions_kv login_idle_p50) s); rss: MiB per session above the idle gateway's ($(sessions_kv rss_mib) MiB in all), unit of the figures 's' aside; $(sessions_kv threads) threads)"
echo "informational, no target:"
info() { printf '%-18s %9ss vs %-16s %9ss %7sx\n' "$1" "$2" "$3" "$4" "$(awk -v a="$2" -v b="$4" 'BEGIN {printf "%.2f", a/b}')"; }
info "cold" "$(printf '%s\n' "${cold_gw[@]}" | median)" "docker-run-usernet" "$(printf '%s\n' "${cold_usernet[@]}" | median)"
info "warm-20ms" "$(printf '%s\n' "${warm20_gw[@]}" | median)" "openssh-20ms" "$(printf '%s\n' "${warm20_sshd[@]}" | median)"
info "stream aes128-gcm" "$(printf '%s\n' "${gcm_gw[@]}" | median)" "openssh aes128-gcm" "$(printf '%s\n' "${gcm_sshd[@]}" | median)"
[ "$LIFECYCLE" = 1 ] && awk -v s="$(usage_kv sweep_cpu)" -v n="$(usage_kv containers)" -v f="$(usage_kv first_sweep_cpu)" -v w="$(usage_kv sweep_wall)" 'BEGIN {
	printf "sampling: sweep wall %.1f ms; first sweep (one inspect per container) %.1f ms CPU; sampling 50 containers every 60s: %.4f%% of a core\n", w*1000, f*1000, s/n*50/60*100 }'
cpu_gib() { awk -v t="${cpu[$1]}" -v hz="$(getconf CLK_TCK)" -v n="$SFTP_N" 'BEGIN {printf "%.2f", t/hz/n}'; }
echo "sftp CPU s/GiB (process + reaped children): put ds01 $(cpu_gib put_gw) vs openssh $(cpu_gib put_sshd), get ds01 $(cpu_gib get_gw) vs openssh $(cpu_gib get_sshd)"
awk -v g="$stream_cpu_gw" -v o="$stream_cpu_sshd" -v hz="$(getconf CLK_TCK)" -v n="$STREAM_N" -v b="$STREAM_BYTES" 'BEGIN {
	f = 1073741824 / b / hz / n; printf "stream CPU s/GiB (process + reaped children): ds01 %.2f vs openssh %.2f\n", g*f, o*f }'
if [ -n "$SMALL_OUT" ]; then
	# One line per row from bench/smallfiles.sh: name, gateway s, OpenSSH s.
	while read -r name g o; do
		info "small $name" "$g" "openssh" "$o"
	done <<<"$SMALL_OUT"
	echo "(small: 10,000 files of 4 KiB in 100 dirs, fresh target each run, medians of ${BENCH_SMALL_N:-3} (scp -O: 1); rsync1 is one file, the fixed cost: the gateway's includes the transfer container's start)"
fi
if [ -n "$KUBE_OUT" ]; then
	# One line per row from bench/kube.sh: name, gateway s, baseline name, baseline s.
	while read -r name g base b; do
		info "kube-$name" "$g" "$base" "$b"
	done <<<"$KUBE_OUT"
	echo "(kube: runtime kubernetes on the cluster of \$DS01_KUBECONFIG or .k8s, the same image from its registry; cold: no pod yet, vs kubectl run --rm -i --restart=Never; warm: pod up, vs kubectl exec; medians of ${BENCH_KUBE_N:-$N})"
fi
echo "gateway peak RSS (VmHWM): $((HWM_BEFORE / 1024)) MiB before the sftp runs, $((HWM_AFTER / 1024)) MiB after (memory must stay flat)"

if [ "$fail" = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	exit 1
fi
