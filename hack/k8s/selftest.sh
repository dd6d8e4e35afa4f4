#!/usr/bin/env bash
# Checks that the test cluster works and leaves the host as it was: snapshots
# sysctls, links, mounts, iptables, top-level cgroups and the host paths the
# kubelet and CNI use; runs up.sh; pushes an image to the cluster's registry
# and runs a pod that pulls it (one fake GPU, the gateway's pod security);
# execs into it (stdin, exit code); runs down.sh twice; compares.
# Needs root, Docker and SELFTEST_IMAGE (default ds01-base:bookworm); no
# cluster may run in K8S_DIR. Docker commands run under DS01_DOCKER_LOCK.
# SELFTEST_PUSH=0 skips the push (the registry's storage, kept across down,
# holds the image from an earlier run): for a caller that must not take the
# Docker lock while it holds another.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
image=${SELFTEST_IMAGE:-ds01-base:bookworm}
lock=${DS01_DOCKER_LOCK-/tmp/ds01-e2e.lock} # empty: the caller holds it
ref=$K8S_REGISTRY/ds01-selftest/base:latest
ns=ds01-selftest
pid_of kubelet >/dev/null && die "a cluster runs in $K8S_DIR: make k8s-down first"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s%N; }
secs() { local ms=$((($(now) - $1) / 1000000)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

# snapshot DIR: what the cluster must leave as it found it. Docker's own
# moving parts (veths, br-*, docker0, its mounts and chains) are left out:
# other tests may start containers meanwhile.
snapshot() {
	local d=$1 p
	mkdir -p "$d"
	sysctl -a 2>/dev/null |
		grep -vE '^(kernel\.random|kernel\.ns_last_pid|kernel\.pty\.nr|fs\.(dentry|inode|file-nr|quota)|net\.netfilter\.nf_conntrack_count|kernel\.sched_domain)' |
		grep -vE '^net\.ipv[46]\.(conf|neigh)\.(veth|br-|docker)' >"$d/sysctl"
	ip -o link | awk '{sub(/@.*/, "", $2); print $2}' | grep -vE '^(veth|br-|docker)' | sort >"$d/links"
	awk '{print $2}' /proc/self/mounts | grep -vE '^(/var/lib/docker|/run/docker|/var/run/docker)/' | sort >"$d/mounts"
	if command -v iptables-save >/dev/null; then
		iptables-save | grep -vE '^#|DOCKER|docker0|br-' | sed 's/\[[0-9]*:[0-9]*\]//' >"$d/iptables"
	fi
	find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d | sort >"$d/cgroups"
	for p in /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods /opt/cni /etc/cni; do
		[ -e "$p" ] && find "$p" | sort
	done >"$d/paths"
	{ pgrep -af -- "$K8S_DIR/" || true; pgrep -af -- "$K8S_BIN/" || true; } | sed 's/^[0-9]* //' | sort -u >"$d/procs"
}

snapshot "$tmp/before"
t=$(now)
"$here/up.sh"
up_time=$(secs "$t")
export KUBECONFIG=$KUBECONFIG_ADMIN

push_time=skipped
if [ "${SELFTEST_PUSH:-1}" = 1 ]; then
	log "pushing $image as $ref"
	t=$(now)
	${lock:+flock "$lock"} sh -c "docker tag '$image' '$ref' && docker push -q '$ref' >/dev/null; rc=\$?; docker rmi '$ref' >/dev/null; exit \$rc"
	push_time=$(secs "$t")
fi

kctl create namespace "$ns" >/dev/null
t=$(now)
kctl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: selftest, namespace: $ns}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  securityContext: {runAsUser: 20001, runAsGroup: 20001, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: $ref
    imagePullPolicy: Always
    command: [sleep, infinity]
    resources: {limits: {nvidia.com/gpu: 1}}
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
YAML
kctl -n "$ns" wait pod/selftest --for=condition=Ready --timeout=180s >/dev/null
pod_time=$(secs "$t")
podip=$(kctl -n "$ns" get pod selftest -o jsonpath='{.status.podIP}')
t=$(now)
set +e
out=$(echo hello | kctl -n "$ns" exec -i selftest -- sh -c 'cat; id -u; exit 3' 2>"$tmp/exec.err")
rc=$?
set -e
exec_time=$(secs "$t")
if [ "$rc" != 3 ] || [ "$out" != $'hello\n20001' ]; then
	die "exec: want output 'hello 20001' and exit 3, got $rc: $out"
fi
log "pod $podip Ready in $pod_time (pull from $K8S_REGISTRY included); exec ok in $exec_time"

t=$(now)
"$here/down.sh"
down_time=$(secs "$t")
"$here/down.sh" # a second time: must be harmless
snapshot "$tmp/after"

fail=0
for f in sysctl links mounts iptables cgroups paths procs; do
	[ -f "$tmp/before/$f" ] || continue
	if ! diff -u "$tmp/before/$f" "$tmp/after/$f" >"$tmp/$f.diff"; then
		log "host changed: $f"
		sed -n '3,40p' "$tmp/$f.diff" >&2
		fail=1
	fi
done
log "up $up_time, push $push_time, pod Ready $pod_time, exec $exec_time, down $down_time"
[ "$fail" = 0 ] || die "FAIL: the host is not as it was"
log "PASS: sysctls, links, mounts, iptables, cgroups and host paths as before"
