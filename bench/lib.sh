# shellcheck shell=bash
# What the benches that run the real gateway share; sourced, not run.
# The sourcing script sets BENCH_NAME (its log lines' prefix), BIN,
# BASE_IMAGE and TMP (its scratch directory) before calling these, and
# PORT through bench_port. The gateway's files are $TMP/gw.yaml,
# $TMP/gw.log and $TMP/resource-limits.yaml; GW_PID is its process.

log() { echo "bench: $BENCH_NAME: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# bench_checks: root, the gateway's binary and the base image are there.
bench_checks() {
	[ "$(id -u)" = 0 ] || die "must run as root (the gateway needs it)"
	[ -x "$BIN" ] || die "$BIN not found: run make build"
	docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || die "$BASE_IMAGE missing: run make base-image"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# bench_port VAR FIRST LAST: sets PORT to $VAR, or else to the first free
# port from FIRST to LAST.
bench_port() {
	local var=$1 p
	PORT="${!var:-}"
	if [ -z "$PORT" ]; then
		for p in $(seq "$2" "$3"); do
			port_free "$p" && {
				PORT=$p
				break
			}
		done
		[ -n "$PORT" ] || die "no free port in $2-$3 (set $var)"
	fi
	port_free "$PORT" || die "port $PORT in use (set $var)"
}

# bench_ssh_opts KEY: sets SSH_OPTS, the options of a client logging in
# to the gateway on PORT with KEY (no agent, config or known hosts).
bench_ssh_opts() {
	SSH_OPTS=(-F /dev/null -i "$1" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
		-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -p "$PORT")
}

# bench_limits [LINE...]: writes DS01's resource-limits.yaml, room for
# small containers, with LINEs added to its defaults.
bench_limits() {
	{
		printf 'defaults:\n  max_cpus: 0.1\n  memory: 256m\n  pids_limit: 64\n'
		local l
		for l in "$@"; do
			printf '  %s\n' "$l"
		done
	} >"$TMP/resource-limits.yaml"
}

# bench_config [LINE...]: writes the gateway's config, listening on PORT,
# keeping everything in TMP, with LINEs (YAML) appended.
bench_config() {
	{
		cat <<EOF
listen: 127.0.0.1:$PORT
data_dir: $TMP/data
workspace_root: $TMP/ws/{user}
base_image: $BASE_IMAGE
command_login: ds01
limits_file: $TMP/resource-limits.yaml
EOF
		local l
		for l in "$@"; do
			printf '%s\n' "$l"
		done
	} >"$TMP/gw.yaml"
}

# wait_port PORT PID LOGFILE: waits until something listens on PORT,
# dying with the log's tail if PID exits first or after 10 s.
wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || {
			tail -n 20 "$3" >&2
			die "process for port $1 exited"
		}
		sleep 0.1
	done
	tail -n 20 "$3" >&2
	die "nothing listening on port $1 after 10s"
}

# gw_start: starts the gateway on $TMP/gw.yaml, its output appended to
# $TMP/gw.log, and waits until it listens.
gw_start() {
	"$BIN" serve --config "$TMP/gw.yaml" >>"$TMP/gw.log" 2>&1 &
	GW_PID=$!
	wait_port "$PORT" "$GW_PID" "$TMP/gw.log"
}

# sshd_start PORT: a private OpenSSH sshd on 127.0.0.1:PORT, the baseline:
# its own host key, config and authorized_keys ($TMP/key.pub, for root).
# OpenSSH's own sftp-server serves SFTP (internal-sftp, the same code
# inside sshd, where the binary is missing). Sets SSHD_PID and SFTP_SERVER.
sshd_start() {
	local s
	SFTP_SERVER=internal-sftp
	for s in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do
		[ -x "$s" ] && { SFTP_SERVER=$s; break; }
	done
	ssh-keygen -q -t ed25519 -N '' -f "$TMP/sshd_host_ed25519"
	cp "$TMP/key.pub" "$TMP/authorized_keys"
	cat >"$TMP/sshd_config" <<EOF
ListenAddress 127.0.0.1:$1
HostKey $TMP/sshd_host_ed25519
PidFile $TMP/sshd.pid
AuthorizedKeysFile $TMP/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp $SFTP_SERVER
EOF
	mkdir -p /run/sshd # privilege separation dir; exists wherever sshd is set up
	/usr/sbin/sshd -f "$TMP/sshd_config" -D -e >"$TMP/sshd.log" 2>&1 &
	SSHD_PID=$!
	wait_port "$1" "$SSHD_PID" "$TMP/sshd.log"
}

gw_stop() {
	[ -n "${GW_PID:-}" ] || return 0
	kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
	GW_PID=
}

# cpu_ticks PID: the process's CPU time so far, its waited-for children's
# included, in clock ticks. The fields after the command name (which may
# hold spaces) start at field 3, state.
cpu_ticks() {
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	# shellcheck disable=SC2086 # split into fields on purpose
	set -- $s
	echo $((${12} + ${13} + ${14} + ${15}))
}

# bench_remove_user UID: removes what the gateway made for the user: its
# containers, images and network.
bench_remove_user() {
	local ids imgs
	ids=$(docker ps -a -q --filter "label=ds01.uid=$1")
	[ -n "$ids" ] && docker rm -f -v $ids >/dev/null
	imgs=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^ds01-$1/")
	[ -n "$imgs" ] && docker rmi -f $imgs >/dev/null
	imgs=$(docker images -a -q --filter "label=ds01.uid=$1")
	[ -n "$imgs" ] && docker rmi -f $imgs >/dev/null 2>&1
	docker network rm "ds01-u$1" >/dev/null 2>&1
}

# bench_remove_tmp: removes TMP, after unmounting any workspace staging
# mount a killed gateway left there: never remove through one.
bench_remove_tmp() {
	awk -v t="$TMP/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m"
	done
	rm -rf "$TMP"
}

# Timing: microseconds now; a command's run time (its stdout dropped, stderr to
# $TMP/client.log, a failure fatal); the median of a column of microseconds, in seconds.
now_us() { echo $(($(date +%s%N) / 1000)); }
# time_us CMD...: run CMD (stdout to /dev/null), print microseconds
time_us() {
	local s e
	s=$(now_us)
	"$@" >/dev/null 2>>"$TMP/client.log" || {
		tail -n 20 "$TMP/client.log" "$TMP/gw.log" >&2
		die "failed: $*"
	}
	e=$(now_us)
	echo $((e - s))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) m=a[(NR+1)/2]; else m=(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m/1e6}'; }
