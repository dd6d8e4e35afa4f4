# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Shared settings and helpers of the test-cluster harness (sourced by up.sh,
# down.sh, build.sh and selftest.sh). Everything the cluster writes lives under
# K8S_DIR, except what the kubelet and CNI insist on putting on the host
# (sysctls, kubepods cgroups, the bridge, /var/lib/cni/results, the
# device-plugins socket): down.sh puts those back.

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
K8S_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S_CACHE=${DS01_K8S_CACHE:-/var/cache/ds01-k8s}/$K8S_VERSION
K8S_BIN=$K8S_CACHE/bin
K8S_DIR=${K8S_DIR:-$K8S_ROOT/.k8s}
case $K8S_DIR in /*) ;; *) K8S_DIR=$K8S_ROOT/$K8S_DIR ;; esac
K8S_DIR=${K8S_DIR%/}

K8S_API_PORT=${K8S_API_PORT:-6443}
K8S_ETCD_PORT=${K8S_ETCD_PORT:-12379}      # loopback only; not 2379, so a host etcd is left alone
K8S_REGISTRY=${K8S_REGISTRY:-127.0.0.1:5000}
K8S_POD_CIDR=${K8S_POD_CIDR:-10.244.0.0/24}
K8S_SERVICE_CIDR=${K8S_SERVICE_CIDR:-10.96.0.0/24}
K8S_BRIDGE=ds01k8s0                        # our own bridge name: never docker0 or cni0
K8S_CNI_NET=ds01-k8s                       # CNI network name (prefix of /var/lib/cni/results entries)
K8S_PAUSE_IMAGE=ds01.local/pause:1         # made from busybox-static, imported, never pulled

# The binaries the cache must hold to count as complete.
K8S_BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

# Sysctls the kubelet sets at start (setupKernelTunables) and the CNI bridge
# may turn on (isGateway): saved by up.sh, restored by down.sh.
K8S_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)

PKI=$K8S_DIR/pki
RUN=$K8S_DIR/run
LOGS=$K8S_DIR/logs
KUBELET_ROOT=$K8S_DIR/kubelet
CTRD=$K8S_DIR/containerd
CTRD_SOCK=$CTRD/containerd.sock
KUBECONFIG_ADMIN=$K8S_DIR/admin.kubeconfig

log() { echo "k8s: $*" >&2; }
die() { echo "k8s: $*" >&2; exit 1; }

kctl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# pid_of NAME: the pid recorded for a component, if that process still runs
# the binary we started (a recycled pid is not ours).
pid_of() {
	local f=$RUN/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(cat "$RUN/$1.exe" 2>/dev/null)" = "$(readlink "/proc/$pid/exe" 2>/dev/null)" ] || return 1
	echo "$pid"
}

# stop NAME...: SIGTERM to each, up to 15 s for all, then SIGKILL.
stop() {
	local name pid pids=() i alive
	for name in "$@"; do
		if pid=$(pid_of "$name"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	for i in $(seq 1 150); do
		alive=()
		for pid in ${pids[@]+"${pids[@]}"}; do
			[ -d "/proc/$pid" ] && alive+=("$pid")
		done
		[ "${#alive[@]}" = 0 ] && break
		if [ "$i" = 150 ]; then
			log "$* ignored SIGTERM for 15 s: SIGKILL"
			kill -KILL "${alive[@]}" 2>/dev/null || true
			sleep 0.2
		fi
		sleep 0.1
	done
	for name in "$@"; do rm -f "$RUN/$name.pid" "$RUN/$name.exe"; done
}

# sysctl_path NAME: /proc/sys path of a sysctl.
sysctl_path() { echo "/proc/sys/${1//.//}"; }
