#!/usr/bin/env bash
# A/B of two gateway builds on sftp put and get of one big file, against
# OpenSSH's sftp-server, in one run: two gateways (BENCH_BIN_A, BENCH_BIN_B)
# and one private sshd, the same client options, the order of the three
# rotating each round. Per size and side: the median time, its spread,
# and CPU seconds per GiB of the server process and its reaped children
# (the gateway's transfer child; sshd's session and sftp-server).
#
# Env: BENCH_BIN_A (main's build), BENCH_BIN_B (default bin/ds01-gateway),
#      BENCH_AB_N (3 rounds), BENCH_AB_SIZES (MiB, "256 1024"),
#      BENCH_AB_UID (28550), BASE_IMAGE.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN_A="${BENCH_BIN_A:?set BENCH_BIN_A to the build to compare with}"
BIN_B="${BENCH_BIN_B:-$PWD/bin/ds01-gateway}"
BIN=$BIN_B
N="${BENCH_AB_N:-3}"
SIZES="${BENCH_AB_SIZES:-256 1024}"
BUID="${BENCH_AB_UID:-28550}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
PROJ=proj

BENCH_NAME=sftpab
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_checks
[ -x "$BIN_A" ] || die "$BIN_A not found"

TMP="$(mktemp -d /tmp/ds01-bench-ab.XXXXXX)"
PIDS=()
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	bench_remove_user "$BUID"
	bench_remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ssh-keygen -q -t ed25519 -N '' -C bench -f "$TMP/key"
declare -A port pid ws
for side in a b; do
	bench_port NOPE_$side 2440 2459
	port[$side]=$PORT
	b=$BIN_A
	[ "$side" = b ] && b=$BIN_B
	mkdir -p "$TMP/$side"
	cat >"$TMP/$side/gw.yaml" <<EOC
listen: 127.0.0.1:$PORT
data_dir: $TMP/$side/data
workspace_root: $TMP/$side/ws/{user}
base_image: $BASE_IMAGE
command_login: ds01
EOC
	"$b" user add bench --uid "$BUID" --gid "$BUID" --key-file "$TMP/key.pub" --config "$TMP/$side/gw.yaml" >/dev/null
	"$b" serve --config "$TMP/$side/gw.yaml" >>"$TMP/$side/gw.log" 2>&1 &
	pid[$side]=$!
	PIDS+=("$!")
	wait_port "$PORT" "${pid[$side]}" "$TMP/$side/gw.log"
	ws[$side]="$TMP/$side/ws/bench/$PROJ"
done
bench_port NOPE_sshd 2460 2479
port[sshd]=$PORT
sshd_start "$PORT"
pid[sshd]=$SSHD_PID
PIDS+=("$SSHD_PID")
mkdir -p "$TMP/sshd-files"
ws[sshd]="$TMP/sshd-files"
SSH_OPTS=(-F /dev/null -i "$TMP/key" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
	-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes)
# The workspace exists after a first (untimed) transfer.
for side in a b; do
	echo "ls" >"$TMP/ls.batch"
	sftp "${SSH_OPTS[@]}" -P "${port[$side]}" -b "$TMP/ls.batch" "$PROJ@127.0.0.1" >/dev/null
done

xfer() { # side op file: one timed sftp put or get; prints microseconds
	local side=$1 op=$2 f=$3 user=$PROJ remote=big.bin
	[ "$side" = sshd ] && user=root remote="${ws[sshd]}/big.bin"
	if [ "$op" = put ]; then
		printf 'put %s %s\n' "$f" "$remote" >"$TMP/x.batch"
	else
		printf 'get %s %s\n' "$remote" "$TMP/got.bin" >"$TMP/x.batch"
	fi
	time_us sftp "${SSH_OPTS[@]}" -P "${port[$side]}" -b "$TMP/x.batch" "$user@127.0.0.1"
}

declare -A t cpu med
for mib in $SIZES; do
	head -c "${mib}M" /dev/urandom >"$TMP/big.bin"
	bytes=$((mib << 20))
	for i in $(seq 1 "$N"); do
		# Rotate the order: a b sshd, b sshd a, sshd a b.
		order=(a b sshd a b)
		order=("${order[@]:$(((i - 1) % 3)):3}")
		for op in put get; do
			for side in "${order[@]}"; do
				rm -f "${ws[$side]}/big.bin" "$TMP/got.bin"
				[ "$op" = get ] && { cp "$TMP/big.bin" "${ws[$side]}/big.bin"; chown "$BUID:$BUID" "${ws[$side]}/big.bin"; }
				sync
				c0=$(cpu_ticks "${pid[$side]}")
				us=$(xfer "$side" "$op" "$TMP/big.bin")
				c1=$(cpu_ticks "${pid[$side]}")
				got="${ws[$side]}/big.bin"
				[ "$op" = get ] && got="$TMP/got.bin"
				[ "$(stat -c %s "$got")" = "$bytes" ] || die "$side $op: $got is short"
				t[$mib,$op,$side]+="$us "
				cpu[$mib,$op,$side]+="$((c1 - c0)) "
			done
		done
	done
done
spread() { sort -n | awk '{a[NR]=$1} END {printf "%.2f-%.2f", a[1]/1e6, a[NR]/1e6}'; }
cpu_gib() { # clock ticks (1/100 s) per run -> median CPU s per GiB
	local mib=$1
	tr ' ' '\n' | grep . | sort -n | awk -v m="$mib" '{a[NR]=$1} END {v=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", v/100*1024/m}'
}
echo "sftp A/B, $N rounds, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); A=$BIN_A B=$BIN_B"
for mib in $SIZES; do
	for op in put get; do
		line="$op ${mib}MiB:"
		for side in a b sshd; do
			m=$(echo "${t[$mib,$op,$side]}" | tr ' ' '\n' | grep . | median)
			s=$(echo "${t[$mib,$op,$side]}" | tr ' ' '\n' | grep . | spread)
			c=$(echo "${cpu[$mib,$op,$side]}" | cpu_gib "$mib")
			line+=" $side ${m}s ($s) cpu ${c}s/GiB;"
			med[$side]=$m
		done
		echo "  per round, µs: a ${t[$mib,$op,a]}| b ${t[$mib,$op,b]}| sshd ${t[$mib,$op,sshd]}"
		echo "$line ratio a/sshd $(awk -v x="${med[a]}" -v y="${med[sshd]}" 'BEGIN{printf "%.2f", x/y}') b/sshd $(awk -v x="${med[b]}" -v y="${med[sshd]}" 'BEGIN{printf "%.2f", x/y}')"
	done
done
