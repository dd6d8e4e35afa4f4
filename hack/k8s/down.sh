#!/usr/bin/env bash
# Stops the test cluster in ${K8S_DIR:-<repo>/.k8s} and puts the host back as
# up.sh found it: pods, kubepods cgroups, the CNI bridge and its results,
# mounts, the kubelet's sysctls and host directories. Keeps pki/ (so a later
# up.sh hands out the same kubeconfigs), logs/ and the registry's storage.
# Safe to run twice.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
[ -d "$K8S_DIR" ] || exit 0
t0=$(date +%s%N)
tl=$t0
# lap WHAT: says how long WHAT took, when it took a second or more.
lap() {
	local ms=$((($(date +%s%N) - tl) / 1000000))
	[ "$ms" -lt 1000 ] || log "$1: $((ms / 1000)).$((ms % 1000 / 100)) s"
	tl=$(date +%s%N)
}
ctr_() { ctr -a "$CTRD_SOCK" -n k8s.io "$@"; }

# No controller may recreate what we delete.
stop kube-controller-manager kube-scheduler
lap "stopping the controllers"

# Let the kubelet stop the pods itself while it runs: the CNI then releases
# the pods' addresses and veths the ordinary way.
if pid_of kubelet >/dev/null && pid_of containerd >/dev/null && kctl get --raw /readyz >/dev/null 2>&1; then
	kctl delete pods --all-namespaces --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
	for _ in $(seq 1 100); do
		[ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && break
		sleep 0.2
	done
fi
lap "stopping the pods"
stop kubelet
lap "stopping the kubelet"

# Whatever still runs: SIGKILL every task while its shim can still reap it.
if pid_of containerd >/dev/null; then
	for id in $(ctr_ tasks ls -q 2>/dev/null); do
		ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	for _ in $(seq 1 50); do
		[ -z "$(ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"')" ] && break
		sleep 0.2
	done
	for id in $(ctr_ tasks ls -q 2>/dev/null); do
		ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
	done
fi
lap "killing leftover tasks"
stop containerd
# Shims of our containerd outlive it: find them by our socket address.
while read -r f; do
	p=${f%/cmdline}
	case $(readlink "$p/exe" 2>/dev/null) in
	*containerd-shim*) kill -KILL "${p#/proc/}" 2>/dev/null || true ;;
	esac
done < <(grep -laF -- "$CTRD_SOCK" /proc/[0-9]*/cmdline 2>/dev/null)
stop kube-apiserver docker-registry
stop etcd
lap "stopping containerd, the apiserver, etcd and the registry"

# Processes left in the pods' cgroups (none, unless a shim died first).
cgroups=()
for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
	[ -d "$d" ] && cgroups+=("$d")
done
if [ "${#cgroups[@]}" -gt 0 ]; then
	for pid in $(find "${cgroups[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	sleep 0.2
	for d in "${cgroups[@]}"; do
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[ -d "$d" ] && log "could not remove cgroup $d"
	done
fi

f=/sys/fs/cgroup/cgroup.subtree_control
if [ -f "$K8S_DIR/host-cgroup-subtree" ] && [ -f "$f" ]; then
	read -ra enabled <"$f" || true
	for c in ${enabled[@]+"${enabled[@]}"}; do
		# Only what the kubelet added, and only if no other cgroup uses it now.
		grep -qw -- "$c" "$K8S_DIR/host-cgroup-subtree" || echo "-$c" >"$f" 2>/dev/null || true
	done
	rm -f "$K8S_DIR/host-cgroup-subtree"
fi
lap "removing the kubepods cgroups"
# Mounts under the cluster's directory (netns, pod volumes, overlay rootfs),
# deepest first.
mapfile -t mounts < <(awk -v d="$K8S_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
for m in "${mounts[@]}"; do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
done

lap "unmounting"
if ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then
	ip link delete "$K8S_BRIDGE"
fi
rm -f /var/lib/cni/results/"$K8S_CNI_NET"-* /var/lib/kubelet/device-plugins/kubelet.sock
for l in /var/log/containers/*.log; do
	if [ -L "$l" ]; then
		case $(readlink "$l") in "$K8S_DIR"/*) rm -f "$l" ;; esac
	fi
done
# Host directories that did not exist before up.sh, deepest first.
if [ -f "$K8S_DIR/host-dirs" ]; then
	sort -r "$K8S_DIR/host-dirs" | while read -r d; do
		if [ -d "$d" ]; then rm -rf -- "$d"; fi
	done
	rm -f "$K8S_DIR/host-dirs"
fi
if [ -f "$K8S_DIR/host-sysctls" ]; then
	while read -r name value; do
		echo "$value" >"$(sysctl_path "$name")" 2>/dev/null || log "could not restore $name=$value"
	done <"$K8S_DIR/host-sysctls"
	rm -f "$K8S_DIR/host-sysctls"
fi

lap "restoring the host"
# The cluster's state goes; certificates, logs and the registry's storage stay.
if ! grep -qF " $K8S_DIR/" /proc/self/mounts; then
	find "$K8S_DIR" -mindepth 1 -maxdepth 1 ! -name pki ! -name logs ! -name registry -exec rm -rf {} +
fi
lap "removing the state"
ms=$((($(date +%s%N) - t0) / 1000000))
log "down in $((ms / 1000)).$((ms % 1000 / 100)) s ($K8S_DIR)"
