#!/usr/bin/env bash
# Starts the single-node test cluster under ${K8S_DIR:-<repo>/.k8s}: etcd,
# kube-apiserver, controller-manager, scheduler, a private containerd, the
# kubelet, a CNI bridge, and a local registry on 127.0.0.1:5000.
# Leaves $K8S_DIR/admin.kubeconfig and $K8S_DIR/env. Idempotent: a cluster that
# already runs and answers is left alone. `down.sh` stops it and cleans up.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
# shellcheck source-path=SCRIPTDIR source=certs.sh
. "$here/certs.sh"
# shellcheck source-path=SCRIPTDIR source=components.sh
. "$here/components.sh"

[ "$(id -u)" = 0 ] || die "must run as root (kubelet, containerd, CNI)"
t0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

"$here/build.sh"
for c in openssl containerd ctr runc busybox docker-registry; do
	command -v "$c" >/dev/null || die "$c not found (apt-get install: openssl containerd busybox-static docker-registry; .ci/run does it)"
done
[ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge not found (apt-get install containernetworking-plugins)"

node=${K8S_NODE_NAME:-$(hostname -s | tr '[:upper:]' '[:lower:]')}
ip=${K8S_NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')}
[ -n "$ip" ] || ip=$(hostname -I | awk '{print $1}')
[ -n "$ip" ] || die "cannot tell the node's IP (set K8S_NODE_IP)"

# Already running: nothing to do (a node briefly NotReady is waited for,
# never a reason to restart a cluster others use).
components=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet docker-registry)
running=0
for c in "${components[@]}"; do pid_of "$c" >/dev/null && running=$((running + 1)); done
if [ "$running" = "${#components[@]}" ] && [ -f "$KUBECONFIG_ADMIN" ]; then
	wait_for kube-apiserver "apiserver /readyz" 60 kctl get --raw /readyz
	wait_for kubelet "node $node Ready" 60 node_ready "$node"
	log "already running in $K8S_DIR (KUBECONFIG=$KUBECONFIG_ADMIN)"
	exit 0
fi
# Leftovers of a cluster that died or half-started: clean up before wiping,
# never rm -rf across a mount.
if [ -d "$RUN" ] || grep -q " $K8S_DIR/" /proc/self/mounts; then
	log "cleaning up a previous cluster in $K8S_DIR ($running of ${#components[@]} components running)"
	"$here/down.sh"
fi

sock_len=$(printf '%s' "$CTRD_SOCK.ttrpc" | wc -c)
[ "$sock_len" -lt 100 ] || die "K8S_DIR path too long for a unix socket: $CTRD_SOCK"

# Wipe everything but the certificates (kubeconfigs handed out stay valid)
# and the registry's storage (a cache of pushed images, like the binaries).
mkdir -p "$K8S_DIR"
find "$K8S_DIR" -mindepth 1 -maxdepth 1 ! -name pki ! -name registry -exec rm -rf {} +
mkdir -p "$RUN" "$LOGS"
save_host_state
make_pki "$node" "$ip"
kubeconfig "$KUBECONFIG_ADMIN" admin
kubeconfig "$K8S_DIR/controller-manager.kubeconfig" controller-manager
kubeconfig "$K8S_DIR/scheduler.kubeconfig" scheduler
kubeconfig "$K8S_DIR/kubelet.kubeconfig" node

# Independent of each other: start them together.
start_etcd
start_containerd
start_registry
wait_for etcd "etcd health" 30 curl -sf "http://127.0.0.1:$K8S_ETCD_PORT/health"
start_apiserver "$ip"
wait_for containerd "containerd" 30 ctr -a "$CTRD_SOCK" version
import_pause
write_cni
wait_for kube-apiserver "apiserver /readyz" 60 kctl get --raw /readyz
log "apiserver ready after $(elapsed) s"
start_controllers
start_kubelet "$node" "$ip"
wait_for kubelet "node $node Ready" 90 node_ready "$node"
log "node Ready after $(elapsed) s"
wait_for docker-registry "registry on $K8S_REGISTRY" 30 curl -sf "http://$K8S_REGISTRY/v2/"

# Fake GPUs: an extended resource on the node's status capacity is scheduled
# like a real one, with no device plugin.
kctl patch node "$node" --subresource=status --type=json \
	-p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"2"}]' >/dev/null
kctl create namespace ds01 >/dev/null
wait_for kube-controller-manager "default service accounts" 60 \
	kctl -n default get serviceaccount default -o name
wait_for kube-controller-manager "service account ds01/default" 30 \
	kctl -n ds01 get serviceaccount default -o name
wait_for kubelet "nvidia.com/gpu allocatable" 30 gpus_allocatable "$node"

cat >"$K8S_DIR/env" <<ENV
# Written by hack/k8s/up.sh: source it.
export KUBECONFIG=$KUBECONFIG_ADMIN
export K8S_DIR=$K8S_DIR
export K8S_BIN=$K8S_BIN
export K8S_REGISTRY=$K8S_REGISTRY
export K8S_NODE_NAME=$node
export K8S_NODE_IP=$ip
export K8S_CONTAINERD_SOCK=$CTRD_SOCK
export K8S_POD_CIDR=$K8S_POD_CIDR
ENV
log "cluster up in $(elapsed) s: KUBECONFIG=$KUBECONFIG_ADMIN node=$node registry=$K8S_REGISTRY (env: $K8S_DIR/env)"
