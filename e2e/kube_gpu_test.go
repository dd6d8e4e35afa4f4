//go:build kube

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// These tests share the cluster node's two fake GPUs (nvidia.com/gpu in
// its status capacity, from make k8s-up): they never run in parallel.

func startKubeGPUGateway(t *testing.T, retire string, lifecycle map[string]string) *gw {
	t.Helper()
	return kubeGateway(t, gwOpts{RetireAfter: retire, Lifecycle: lifecycle, Extra: map[string]string{
		"watch_interval": "500ms", "gpu_queue_timeout": "2m",
	}}, "nvidia.com/gpu")
}

func (g *gw) gpuStatus(t *testing.T, u *user) gpuStatus {
	t.Helper()
	var st gpuStatus
	out := g.mustSSH(t, u, "ds01", "gpu-status", "--format", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("gpu-status --format json: %v\n%s", err, out)
	}
	return st
}

// slotOf is the slot the user holds ("" for none, "many" for several).
func (st gpuStatus) slotOf(name string) string {
	slot := ""
	for uuid, who := range st.held() {
		if who == name {
			if slot != "" {
				return "many"
			}
			slot = uuid
		}
	}
	return slot
}

// held maps each held slot to its user.
func (st gpuStatus) held() map[string]string {
	m := map[string]string{}
	for _, s := range st.Slots {
		if s.User != nil {
			m[s.UUID] = *s.User
		}
	}
	return m
}

// checkGPUPod checks that the user's pod asks the scheduler for exactly
// the GPU the gateway gave, on the node that has it.
func checkGPUPod(t *testing.T, u *user, project, slot string) {
	t.Helper()
	ps := pods(t, u.uid, project)
	if len(ps) != 1 {
		t.Fatalf("pods of %s/%s: %v, want 1", u.name, project, podNames(ps))
	}
	p := ps[0]
	// Slot UUIDs are k8s/<node>/<resource>/<index>; the resource has a slash.
	parts := strings.Split(slot, "/")
	if len(parts) < 4 || parts[0] != "k8s" {
		t.Fatalf("slot %q: want k8s/<node>/<resource>/<index>", slot)
	}
	node, resource := parts[1], strings.Join(parts[2:len(parts)-1], "/")
	if p.Spec.NodeName != node {
		t.Errorf("pod %s runs on node %q, want %q (the slot's)", p.Name, p.Spec.NodeName, node)
	}
	for _, c := range p.Spec.Containers {
		if c.Name != "project" {
			continue
		}
		if q := c.Resources.Limits[corev1.ResourceName(resource)]; q.Value() != 1 {
			t.Errorf("pod %s: limits %s = %s, want 1", p.Name, resource, q.String())
		}
	}
}

// Two users each hold one of the node's two GPUs; a third waits in the
// queue and starts, on the freed GPU, when one of them leaves.
func TestKubeGPUs(t *testing.T) {
	g := startKubeGPUGateway(t, "1s", nil)
	ann := g.addKubeUser(t, "kann", 28441)
	ben := g.addKubeUser(t, "kben", 28442)
	cat := g.addKubeUser(t, "kcat", 28443)

	// The pod's environment names no slot: the node's device plugin sets
	// NVIDIA_VISIBLE_DEVICES. Who holds which slot is gpu-status's to say.
	holdAnn := g.startSSH(t, ann, "p+gpus=1", "echo up; sleep 300")
	holdAnn.waitOutput(t, "up", timeoutLong)
	holdBen := g.startSSH(t, ben, "p+gpus=1", "echo up; sleep 300")
	holdBen.waitOutput(t, "up", timeoutLong)
	st := g.gpuStatus(t, ann)
	annGPU, benGPU := st.slotOf(ann.name), st.slotOf(ben.name)
	if !strings.HasPrefix(annGPU, "k8s/") || !strings.HasPrefix(benGPU, "k8s/") || annGPU == benGPU {
		t.Fatalf("gpu-status: kann holds %q, kben %q: want one k8s/ slot each", annGPU, benGPU)
	}
	if !strings.Contains(holdAnn.err.String(), "allocated, 1.0 of 1.0 gpueq in use") {
		t.Errorf("no GPU notice: %q", holdAnn.err.String())
	}
	checkGPUPod(t, ann, "p", annGPU)
	checkGPUPod(t, ben, "p", benGPU)

	wait := g.startSSH(t, cat, "p+gpus=1", "echo up; sleep 300")
	wait.waitErr(t, "position 1 of 1", timeoutLong)
	st = g.gpuStatus(t, ann)
	if h := st.held(); len(st.Slots) != 2 || h[annGPU] != ann.name || h[benGPU] != ben.name || len(st.Queue) != 1 || st.Queue[0].User != cat.name {
		t.Errorf("gpu-status with both held and kcat waiting: %+v (held %v)", st, h)
	}
	if ps := pods(t, cat.uid, "p"); len(ps) != 0 {
		t.Errorf("kcat has a pod while queued: %v", podNames(ps))
	}

	holdAnn.stop() // after the 1 s grace her GPU goes to cat
	wait.waitOutput(t, "up", timeoutLong)
	if got := g.gpuStatus(t, cat).slotOf(cat.name); got != annGPU {
		t.Errorf("kcat holds %q after kann left, want her %s", got, annGPU)
	}
	checkGPUPod(t, cat, "p", annGPU)
	waitPods(t, ann.uid, "p", 0, timeoutShort)
}

// The gateway dies (kill -9) while a detached job runs in a GPU pod; the
// restarted gateway adopts the pod (no second one), the job's GPU stays
// accounted to its user, and the other GPU is still the only one free.
func TestKubeRestartAdoptsDetachedPod(t *testing.T) {
	g := startKubeGPUGateway(t, "3s", lifecycleBlock())
	dan := g.addKubeUser(t, "kdan", 28451)
	eve := g.addKubeUser(t, "keve", 28452)
	fay := g.addKubeUser(t, "kfay", 28453)
	const proj = "job"

	g.mustSSH(t, dan, proj+"+gpus=1", `echo before > /tmp/marker; nohup sleep 600 >/dev/null 2>&1 &`)
	before := pods(t, dan.uid, proj)
	if len(before) != 1 {
		t.Fatalf("right after the client left: pods %v, want 1", podNames(before))
	}
	slot := g.gpuStatus(t, dan).slotOf(dan.name)
	if !strings.HasPrefix(slot, "k8s/") {
		t.Fatalf("gpu-status: kdan holds %q, want one k8s/ slot", slot)
	}
	time.Sleep(g.retire + 2*time.Second)
	if got := pods(t, dan.uid, proj); len(got) != 1 || got[0].Name != before[0].Name {
		t.Fatalf("%s after the client left, with a nohup job running: pods %v, want %s kept", g.retire+2*time.Second, podNames(got), before[0].Name)
	}

	g.kill9(t)
	g.start(t)
	time.Sleep(g.retire + 5*time.Second)

	if got := pods(t, dan.uid, proj); len(got) != 1 || got[0].Name != before[0].Name {
		t.Fatalf("after kill -9 and restart: pods %v, want only the adopted %s", podNames(got), before[0].Name)
	}
	if c := g.container(t, dan, proj); c == nil || !c.detached() {
		t.Errorf("container-list after the restart: want the adopted pod detached, got %v", c)
	}
	if h := g.gpuStatus(t, dan).held(); len(h) != 1 || h[slot] != dan.name {
		t.Errorf("gpu-status after the restart: held %v, want only %s held by kdan", h, slot)
	}
	r := g.ssh(t, dan, proj+"+gpus=1", "cat /tmp/marker")
	if r.code != 0 || r.stdout != "before\n" {
		t.Errorf("a login after the restart does not land in the adopted pod: %s", r)
	}
	if got := pods(t, dan.uid, proj); len(got) != 1 || got[0].Name != before[0].Name {
		t.Errorf("after a login to the adopted pod: pods %v, want only %s", podNames(got), before[0].Name)
	}

	// The other GPU is free, and only that one.
	hold := g.startSSH(t, eve, "p+gpus=1", "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	if got := g.gpuStatus(t, eve).slotOf(eve.name); !strings.HasPrefix(got, "k8s/") || got == slot {
		t.Errorf("keve holds %q, want the other GPU than kdan's %s", got, slot)
	}
	wait := g.startSSH(t, fay, "p+gpus=1", "echo up; sleep 300")
	wait.waitErr(t, "position 1 of 1", timeoutLong)
	if ps := pods(t, fay.uid, "p"); len(ps) != 0 {
		t.Errorf("kfay has a pod while both GPUs are held: %v", podNames(ps))
	}
}
