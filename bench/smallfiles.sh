#!/usr/bin/env bash
# Many small files through the gateway and through OpenSSH: a tree of
# 10,000 files of 4 KiB (100 dirs x 100 files, made once and cached as
# /tmp/ds01-bench-smallfiles-100x100x4k), put and get, with
#   scp -r       (OpenSSH 9 scp: the SFTP protocol)
#   scp -O -r    (the legacy scp protocol; one run)
#   sftp put -r / get -r (a batch file)
#   rsync -a     (the gateway runs rsync's server in a transfer container)
# each into a fresh target directory, medians of BENCH_SMALL_N. Also times
# rsync of a single small file (rsync1: the fixed cost, mostly the transfer
# container's start) so the rsync rows can be read against it.
# Starts a gateway and a private sshd of its own, the same way bench/run.sh
# does. Prints one "NAME GW_S SSHD_S" line per row; bench/run.sh turns them
# into rows. Runs alone too (root, Docker; run make build first).
#
# Env: BENCH_SMALL_N (3), BENCH_SMALL_UID (28000), BENCH_SMALL_GW_PORT and
#      BENCH_SMALL_SSHD_PORT (first free from 2420 / 2430), BENCH_SMALL_ROWS
#      (the rows to run, default all: scp-put scp-get scpO-put scpO-get
#      sftp-put sftp-get rsync-put rsync-get rsync1), BENCH_BIN, BASE_IMAGE.
set -euo pipefail

cd "$(dirname "$0")/.."
N="${BENCH_SMALL_N:-3}"
BUID="${BENCH_SMALL_UID:-28000}"
BIN="${BENCH_BIN:-$PWD/bin/ds01-gateway}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
ROWS="${BENCH_SMALL_ROWS:-scp-put scp-get scpO-put scpO-get sftp-put sftp-get rsync-put rsync-get rsync1}"
PROJ=proj
TREE=/tmp/ds01-bench-smallfiles-100x100x4k
FILES=10000

BENCH_NAME=smallfiles
# shellcheck source=bench/lib.sh
. bench/lib.sh

[ "$(id -u)" = 0 ] || die "must run as root (the gateway needs it; sshd runs privately as root)"
[ -x "$BIN" ] || die "$BIN not found: run make build"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE missing: run make base-image"
[ -x /usr/sbin/sshd ] || die "no /usr/sbin/sshd (bench/run.sh installs it)"
command -v rsync >/dev/null || die "no rsync"

first_free() { # from: the first free port of ten
	local p
	for p in $(seq "$1" $(($1 + 9))); do
		port_free "$p" && { echo "$p"; return 0; }
	done
	return 1
}
GW_PORT="${BENCH_SMALL_GW_PORT:-$(first_free 2420)}" || die "no free port in 2420-2429"
SSHD_PORT="${BENCH_SMALL_SSHD_PORT:-$(first_free 2430)}" || die "no free port in 2430-2439"

# The tree, made once: 100 dirs of 100 files of 4 KiB of random bytes.
if [ "$(find "$TREE" -type f 2>/dev/null | wc -l)" != "$FILES" ]; then
	log "making $TREE"
	rm -rf "$TREE" "$TREE.tmp"
	mkdir -p "$TREE.tmp"
	for d in $(seq -w 0 99); do
		mkdir "$TREE.tmp/d$d"
		head -c $((100 * 4096)) /dev/urandom | split -b 4096 -a 2 -d - "$TREE.tmp/d$d/f"
	done
	mv "$TREE.tmp" "$TREE"
fi

TMP="$(mktemp -d /tmp/ds01-bench-small.XXXXXX)"
GW_PID= SSHD_PID=
cleanup() {
	set +e
	[ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
	[ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
	ids=$(docker ps -a -q --filter "label=ds01.uid=$BUID")
	[ -n "$ids" ] && docker rm -f -v $ids >/dev/null
	imgs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^ds01-$BUID/")
	[ -n "$imgs" ] && docker rmi -f $imgs >/dev/null
	docker network rm "ds01-u$BUID" >/dev/null 2>&1
	# A workspace staging mount left by a killed gateway: never remove through it.
	awk -v t="$TMP/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m"
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


ssh-keygen -q -t ed25519 -N '' -C bench -f "$TMP/key"
SSH_OPTS=(-F /dev/null -i "$TMP/key" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
	-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes)

# --- the gateway: as bench/run.sh starts it ---
cat >"$TMP/gw.yaml" <<EOF
listen: 127.0.0.1:$GW_PORT
data_dir: $TMP/data
workspace_root: $TMP/ws/{user}
base_image: $BASE_IMAGE
command_login: ds01
EOF
"$BIN" user add bench --uid "$BUID" --gid "$BUID" --key-file "$TMP/key.pub" --config "$TMP/gw.yaml" >/dev/null
PORT=$GW_PORT
gw_start

# --- a private OpenSSH sshd: as bench/run.sh starts it ---
sshd_start "$SSHD_PORT"

GW="$PROJ@127.0.0.1"
SSHD="root@127.0.0.1"
GW_WS="$TMP/ws/bench/$PROJ" # the workspace, /workspace in the gateway's view
SSHD_DIR="$TMP/sshd"        # sshd's side: an absolute path on the same disk
mkdir -p "$SSHD_DIR" "$TMP/local"

# The first login builds the project image (untimed); the rsync rows need it.
ssh "${SSH_OPTS[@]}" -p "$GW_PORT" "$GW" true
ssh "${SSH_OPTS[@]}" -p "$SSHD_PORT" "$SSHD" true

now_us() { echo $(($(date +%s%N) / 1000)); }
run_us() { # CMD...: microseconds
	local s
	s=$(now_us)
	"$@" </dev/null >/dev/null 2>>"$TMP/client.log" || {
		tail -n 20 "$TMP/client.log" "$TMP/gw.log" >&2
		die "failed: $*"
	}
	echo $(($(now_us) - s))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) m=a[(NR+1)/2]; else m=(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m/1e6}'; }
check_tree() { # dir: the copy must hold every file with every byte
	local n
	n=$(find "$1" -type f | wc -l)
	[ "$n" = "$FILES" ] || die "$1 has $n files, want $FILES"
	[ "$(du -s --apparent-size -B1 "$1" | cut -f1)" -ge $((FILES * 4096)) ] || die "$1 is short"
}

# One copy of the tree on each server to get from, the gateway's owned by the user.
cp -a "$TREE" "$GW_WS/src"
chown -R "$BUID:$BUID" "$GW_WS/src"
cp -a "$TREE" "$SSHD_DIR/src"

# Each client command, for a side: put copies $TREE to the remote dir dst,
# get copies the remote src to $TMP/local/dst. The gateway's start directory
# is /workspace; sshd's gets absolute paths.
remote() { [ "$1" = gw ] && echo "dst" || echo "$SSHD_DIR/dst"; }
remote_src() { [ "$1" = gw ] && echo "src" || echo "$SSHD_DIR/src"; }
port() { [ "$1" = gw ] && echo "$GW_PORT" || echo "$SSHD_PORT"; }
login() { [ "$1" = gw ] && echo "$GW" || echo "$SSHD"; }
remote_dir() { [ "$1" = gw ] && echo "$GW_WS/dst" || echo "$SSHD_DIR/dst"; }
op() { # side row
	local s=$1 p l
	p=$(port "$s")
	l=$(login "$s")
	case $2 in
	scp-put) scp -q -r "${SSH_OPTS[@]}" -P "$p" "$TREE" "$l:$(remote "$s")" ;;
	scp-get) scp -q -r "${SSH_OPTS[@]}" -P "$p" "$l:$(remote_src "$s")" "$TMP/local/dst" ;;
	scpO-put) scp -O -q -r "${SSH_OPTS[@]}" -P "$p" "$TREE" "$l:$(remote "$s")" ;;
	scpO-get) scp -O -q -r "${SSH_OPTS[@]}" -P "$p" "$l:$(remote_src "$s")" "$TMP/local/dst" ;;
	sftp-put)
		printf 'put -r %s %s\n' "$TREE" "$(remote "$s")" >"$TMP/batch"
		sftp -q "${SSH_OPTS[@]}" -P "$p" -b "$TMP/batch" "$l"
		;;
	sftp-get)
		printf 'get -r %s %s\n' "$(remote_src "$s")" "$TMP/local/dst" >"$TMP/batch"
		sftp -q "${SSH_OPTS[@]}" -P "$p" -b "$TMP/batch" "$l"
		;;
	rsync-put) rsync -a -e "ssh ${SSH_OPTS[*]} -p $p" "$TREE/" "$l:$(remote "$s")/" ;;
	rsync-get) rsync -a -e "ssh ${SSH_OPTS[*]} -p $p" "$l:$(remote_src "$s")/" "$TMP/local/dst/" ;;
	rsync1) rsync -a -e "ssh ${SSH_OPTS[*]} -p $p" "$TREE/d00/f00" "$l:$(remote "$s")" ;;
	*) die "unknown row $2" ;;
	esac
}
target_of() { # side row: the directory a run fills
	case $2 in
	*-put | rsync1) remote_dir "$1" ;;
	*) echo "$TMP/local/dst" ;;
	esac
}
fresh() { # side row: remove the target, then sync so that no writeback overlaps the next run
	rm -rf "$(target_of "$1" "$2")"
	if [ "$2" = rsync1 ]; then
		mkdir -p "$(target_of "$1" "$2")"
		[ "$1" = gw ] && chown "$BUID:$BUID" "$GW_WS/dst"
	fi
	sync
}
check() { # side row
	case $2 in
	rsync1) [ -f "$(target_of "$1" "$2")/f00" ] || die "$2 through $1: no file" ;;
	*) check_tree "$(target_of "$1" "$2")" ;;
	esac
}

for r in $ROWS; do
	n=$N
	case $r in scpO-*) n=1 ;; esac
	log "$r: $n x gateway and sshd"
	gw=() sshd=()
	for _ in $(seq 1 "$n"); do
		fresh gw "$r"
		gw+=("$(run_us op gw "$r")")
		check gw "$r"
		fresh sshd "$r"
		sshd+=("$(run_us op sshd "$r")")
		check sshd "$r"
	done
	rm -rf "$(target_of gw "$r")" "$(target_of sshd "$r")"
	echo "$r $(printf '%s\n' "${gw[@]}" | median) $(printf '%s\n' "${sshd[@]}" | median)"
done
