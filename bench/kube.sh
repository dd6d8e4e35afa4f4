#!/usr/bin/env bash
# Logins on the Kubernetes runtime against kubectl on the same cluster and
# the same image (the project image the gateway pushed to the registry):
#   cold  ssh proj@gw true, no pod yet        vs  kubectl run --rm -i --restart=Never --image=IMG -- true
#   warm  ssh proj@gw true, the pod running   vs  kubectl exec POD -c project -- true
# medians of BENCH_KUBE_N. Starts a gateway of its own (runtime: kubernetes)
# on an existing cluster: $DS01_KUBECONFIG, else .k8s/admin.kubeconfig (make
# k8s-up); with neither answering it prints nothing and exits 0 (bench/run.sh
# then has no kube rows). Prints "NAME GW_S BASELINE_NAME BASELINE_S" lines;
# bench/run.sh turns them into rows. Runs alone too (root, Docker; make build).
#
# Env: BENCH_KUBE_N (BENCH_N, else 10), BENCH_KUBE_UID (30400), BENCH_KUBE_NS
#      (ds01-bench; made if missing, and then removed), BENCH_KUBE_GW_PORT (first
#      free from 2440), BENCH_BIN, BASE_IMAGE, KUBECTL (kubectl of the cluster's
#      version: $K8S_BIN/kubectl, the harness's cache, or PATH).
set -euo pipefail

cd "$(dirname "$0")/.."
N="${BENCH_KUBE_N:-${BENCH_N:-10}}"
BUID="${BENCH_KUBE_UID:-30400}"
NS="${BENCH_KUBE_NS:-ds01-bench}"
BIN="${BENCH_BIN:-$PWD/bin/ds01-gateway}"
BASE_IMAGE="${BASE_IMAGE:-ds01-base:bookworm}"
PROJ=proj

BENCH_NAME=kube
# shellcheck source=bench/lib.sh
. bench/lib.sh

bench_checks
KCFG="${DS01_KUBECONFIG:-$PWD/.k8s/admin.kubeconfig}"
KUBECTL="${KUBECTL:-}"
if [ -z "$KUBECTL" ]; then
	for k in "${K8S_BIN:-}/kubectl" "${DS01_K8S_CACHE:-/var/cache/ds01-k8s}"/v*/bin/kubectl "$(command -v kubectl || true)"; do
		[ -x "$k" ] && { KUBECTL=$k; break; }
	done
fi
if [ -z "$KUBECTL" ] || [ ! -r "$KCFG" ]; then
	log "skipped: no kubectl or no kubeconfig at $KCFG (make k8s-up, or set DS01_KUBECONFIG)"
	exit 0
fi
kc() { "$KUBECTL" --kubeconfig "$KCFG" "$@"; }
if [ "$(kc get --raw /readyz 2>/dev/null)" != ok ]; then
	log "skipped: the cluster of $KCFG does not answer"
	exit 0
fi

TMP="$(mktemp -d /tmp/ds01-bench-kube.XXXXXX)"
GW_PID="" HOLD_PID="" MADE_NS=""
cleanup() {
	set +e
	[ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
	gw_stop
	kc -n "$NS" delete pods -l "ds01.uid=$BUID" --grace-period=0 --force --wait=false >/dev/null 2>&1
	kc -n "$NS" delete pods -l bench=ds01-kube --grace-period=0 --force --wait=false >/dev/null 2>&1
	kc -n "$NS" delete networkpolicy "ds01-u$BUID" >/dev/null 2>&1
	[ -n "$MADE_NS" ] && kc delete namespace "$NS" --wait=false >/dev/null 2>&1
	bench_remove_user "$BUID"
	bench_remove_tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! kc get namespace "$NS" >/dev/null 2>&1; then
	kc create namespace "$NS" >/dev/null
	MADE_NS=1
fi
for _ in $(seq 1 100); do # pods need the namespace's default service account
	kc -n "$NS" get serviceaccount default >/dev/null 2>&1 && break
	sleep 0.1
done

bench_port BENCH_KUBE_GW_PORT 2440 2449
ssh-keygen -q -t ed25519 -N '' -C bench -f "$TMP/key"
bench_ssh_opts "$TMP/key"
gw_ssh() { ssh "${SSH_OPTS[@]}" -l "$PROJ" 127.0.0.1 "$@"; }
# Room for the pod on a small node; retire at once, so each cold login
# starts a pod of its own.
bench_limits
bench_config "retire_after: 0s" "runtime: kubernetes" "kubernetes: {kubeconfig: \"$KCFG\", namespace: \"$NS\"}"
"$BIN" user add bench --uid "$BUID" --gid "$BUID" --key-file "$TMP/key.pub" --config "$TMP/gw.yaml" >/dev/null
gw_start

gw_pods() { kc -n "$NS" get pods -l "ds01.uid=$BUID" -o name 2>/dev/null; }
wait_gone() {
	for _ in $(seq 1 300); do
		[ -z "$(gw_pods)" ] && return 0
		sleep 0.1
	done
	die "pod still there 30s after logout (retire_after 0s)"
}

running_pod() { # waits for the held session's pod, prints its name
	local p
	for _ in $(seq 1 1200); do
		p=$(kc -n "$NS" get pods -l "ds01.uid=$BUID" --field-selector=status.phase=Running -o name 2>/dev/null | head -n 1)
		[ -n "$p" ] && { echo "${p#pod/}"; return 0; }
		kill -0 "$HOLD_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$TMP/client.log" "$TMP/gw.log" >&2
	die "no running pod for the held session"
}

log "first login (builds and pushes the image, pulls it to the node; not timed)"
# A session held open: its pod gives the image reference, and the warm rows
# log in beside it.
ssh "${SSH_OPTS[@]}" -l "$PROJ" 127.0.0.1 sleep 600 </dev/null >/dev/null 2>>"$TMP/client.log" &
HOLD_PID=$!
POD=$(running_pod)
# The same image as the gateway's pods: the reference they run.
IMG=$(kc -n "$NS" get pod "$POD" -o jsonpath='{.spec.containers[?(@.name=="project")].image}')
[ -n "$IMG" ] || die "no image in pod $POD"
gw_ssh true >/dev/null 2>>"$TMP/client.log" # the session is up, not only the pod

log "warm: $N x ssh vs kubectl exec"
warm_gw=() warm_k=()
for _ in $(seq 1 "$N"); do
	warm_gw+=("$(time_us gw_ssh true)")
	warm_k+=("$(time_us kc -n "$NS" exec "$POD" -c project -- true)")
done
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
HOLD_PID=""
wait_gone

krun() { # name: kubectl run of the same image, attached, removed after
	kc -n "$NS" run "$1" --rm -i --restart=Never --quiet --labels=bench=ds01-kube \
		--image="$IMG" --image-pull-policy=IfNotPresent --command -- true </dev/null
}
krun ds01-bench-warmup >/dev/null 2>>"$TMP/client.log" || die "kubectl run failed: $(tail -n 5 "$TMP/client.log")"

log "cold: $N x ssh vs kubectl run"
cold_gw=() cold_k=()
for i in $(seq 1 "$N"); do
	wait_gone
	cold_gw+=("$(time_us gw_ssh true)")
	wait_gone
	cold_k+=("$(time_us krun "ds01-bench-$i")")
done
wait_gone

echo "cold $(printf '%s\n' "${cold_gw[@]}" | median) kubectl-run $(printf '%s\n' "${cold_k[@]}" | median)"
echo "warm $(printf '%s\n' "${warm_gw[@]}" | median) kubectl-exec $(printf '%s\n' "${warm_k[@]}" | median)"
