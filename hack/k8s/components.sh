# shellcheck shell=bash
# How up.sh starts each component of the test cluster (sourced).

# start NAME BINARY ARGS...: runs BINARY in its own session, logging to
# $LOGS/NAME.log, and records its pid and executable for down.sh.
start() {
	local name=$1 bin
	shift
	bin=$(readlink -f "$(command -v "$1")")
	# setsid: Ctrl-C on `make k8s-up` must not reach the cluster. No inherited
	# descriptor may outlive up.sh in a daemon: `flock LOCK make k8s-up` would
	# otherwise leave LOCK held for as long as the cluster runs.
	(
		for fd in /proc/"$BASHPID"/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] && eval "exec $fd>&-"
		done
		exec setsid "$bin" "${@:2}" </dev/null >>"$LOGS/$name.log" 2>&1
	) &
	echo "$!" >"$RUN/$name.pid"
	echo "$bin" >"$RUN/$name.exe"
}

# wait_for NAME WHAT SECONDS CMD...: until CMD succeeds. Fails with the last
# lines of NAME's log when NAME dies or time runs out.
wait_for() {
	local name=$1 what=$2 secs=$3 i
	shift 3
	for i in $(seq 1 $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		if ! pid_of "$name" >/dev/null; then
			log "$name exited while waiting for $what; last lines of $LOGS/$name.log:"
			tail -n 30 "$LOGS/$name.log" >&2 || true
			exit 1
		fi
		[ "$i" -lt $((secs * 5)) ] && sleep 0.2
	done
	log "no $what after $secs s; last lines of $LOGS/$name.log:"
	tail -n 30 "$LOGS/$name.log" >&2 || true
	exit 1
}

node_ready() {
	[ "$(kctl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

gpus_allocatable() {
	[ "$(kctl get node "$1" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')" = 2 ]
}

# save_host_state: what down.sh must put back: the sysctls the kubelet and CNI
# change, and which host directories the kubelet and CNI are about to create.
save_host_state() {
	local s f
	: >"$K8S_DIR/host-sysctls"
	for s in "${K8S_SYSCTLS[@]}"; do
		f=$(sysctl_path "$s")
		[ -r "$f" ] && echo "$s $(cat "$f")" >>"$K8S_DIR/host-sysctls"
	done
	# cgroup v2: the kubelet enables controllers for its children at the root.
	if [ -f /sys/fs/cgroup/cgroup.subtree_control ]; then
		cat /sys/fs/cgroup/cgroup.subtree_control >"$K8S_DIR/host-cgroup-subtree"
	fi
	: >"$K8S_DIR/host-dirs"
	for f in /var/lib/kubelet /var/lib/kubelet/device-plugins /var/lib/cni /var/lib/cni/results /var/log/containers /var/log/pods; do
		[ -e "$f" ] || echo "$f" >>"$K8S_DIR/host-dirs"
	done
}

start_etcd() {
	start etcd "$K8S_BIN/etcd" --name ds01 --data-dir "$K8S_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
		--advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
		--initial-cluster "ds01=http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
		--unsafe-no-fsync --log-level warn
}

start_apiserver() {
	local ip=$1
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$K8S_ETCD_PORT" \
		--bind-address 127.0.0.1 --advertise-address "$ip" --secure-port "$K8S_API_PORT" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range "$K8S_SERVICE_CIDR" --profiling=false
}

start_controllers() {
	local kc=$K8S_DIR/controller-manager.kubeconfig
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
		--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--service-cluster-ip-range "$K8S_SERVICE_CIDR" --profiling=false
	kc=$K8S_DIR/scheduler.kubeconfig
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
		--bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

# A private containerd: its own config, root, state and socket; dockerd's is
# never touched.
start_containerd() {
	local reg=${K8S_REGISTRY}
	mkdir -p "$CTRD/certs.d/$reg"
	cat >"$CTRD/certs.d/$reg/hosts.toml" <<TOML
# The test registry speaks plain http on loopback.
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve"]
TOML
	cat >"$CTRD/config.toml" <<TOML
version = 2
root = "$CTRD/root"
state = "$CTRD/state"

[grpc]
  address = "$CTRD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  # These VMs lack CAP_SYS_RESOURCE: without it every sandbox fails in runc.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTRD/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CTRD/certs.d"
TOML
	start containerd containerd --config "$CTRD/config.toml"
}

# import_pause: the sandbox image, made from busybox-static (nothing pulled):
# a docker-save archive of one layer, imported with ctr.
import_pause() {
	local d=$K8S_DIR/pause arch diff
	mkdir -p "$d/rootfs/bin"
	cp "$(readlink -f "$(command -v busybox)")" "$d/rootfs/bin/busybox"
	ln -s busybox "$d/rootfs/bin/sh"
	tar -C "$d/rootfs" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/layer.tar" bin
	diff=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
	case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
	cat >"$d/config.json" <<JSON
{"architecture":"$arch","os":"linux","config":{"Entrypoint":["/bin/busybox","sh","-c","trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diff"]}}
JSON
	echo "[{\"Config\":\"config.json\",\"RepoTags\":[\"$K8S_PAUSE_IMAGE\"],\"Layers\":[\"layer.tar\"]}]" >"$d/manifest.json"
	tar -C "$d" -cf "$d/pause.tar" manifest.json config.json layer.tar
	ctr -a "$CTRD_SOCK" -n k8s.io images import "$d/pause.tar" >/dev/null
	rm -rf "$d"
}

write_cni() {
	mkdir -p "$K8S_DIR/cni/net.d" "$K8S_DIR/cni/ipam"
	cat >"$K8S_DIR/cni/net.d/10-ds01.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "$K8S_CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$K8S_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$K8S_DIR/cni/ipam",
        "ranges": [[{"subnet": "$K8S_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
}

start_kubelet() {
	local node=$1 ip=$2
	mkdir -p "$KUBELET_ROOT" "$K8S_DIR/pod-logs"
	cat >"$K8S_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
# No chains in the host's iptables.
makeIPTablesUtilChains: false
podLogsDir: $K8S_DIR/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A busy CI disk must not evict the tests' pods or their images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
YAML
	start kubelet "$K8S_BIN/kubelet" --config "$K8S_DIR/kubelet.yaml" \
		--kubeconfig "$K8S_DIR/kubelet.kubeconfig" --root-dir "$KUBELET_ROOT" \
		--hostname-override "$node" --node-ip "$ip"
}

start_registry() {
	mkdir -p "$K8S_DIR/registry"
	cat >"$K8S_DIR/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $K8S_DIR/registry/data
  delete:
    enabled: true
http:
  addr: $K8S_REGISTRY
YAML
	start docker-registry docker-registry serve "$K8S_DIR/registry/config.yml"
}
