package e2e

import (
	"strings"
	"testing"
	"time"
)

// (g) Someone queues for GPUs: the idle holder's timeout halves, the
// holder is told someone waits, and the waiter gets the GPUs when the idle
// container stops.
func TestLifecyclePressureHalvesIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 40 * time.Second
	// Three GPUs; amy holds one. bo asks for all three and waits, though
	// two are free: the queue alone makes pressure (a third allocated is
	// below pressure_threshold).
	limits := lcLimits(t, t.TempDir(), "  bo:\n    max_gpu_equivalents: 3.0\n    max_gpu_slots_per_container: 3\n")
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "3", "limits_file": limits, "gpu_queue_timeout": "5m"},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String(), "pressure_idle_floor", "10s")})
	amy := g.addUser(t, "amy", 26081, 26081)
	bo := g.addUser(t, "bo", 26082, 26082)
	const proj = "p"

	g.mustSSH(t, bo, proj+"+cpu", "true") // builds bo's image now, not while he queues
	waitContainers(t, bo.uid, proj, 0, g.retire+lcSlack)

	holder := g.startSSH(t, amy, proj, gpuEnv+"; echo ready; sleep 600")
	holder.waitOutput(t, "ready", timeoutLong)
	active := time.Now() // amy's last activity: her session started

	waiter := g.startSSH(t, bo, proj+"+gpus=3", gpuEnv+"; sleep 600")
	waiter.waitErr(t, "position 1", timeoutShort)
	queued := time.Now()
	// Half the idle timeout, its SIGTERM grace, slack: well before the
	// full timeout would have stopped amy.
	until := active.Add(idle/2 + lcGrace + lcSlack)
	if !waitFor(time.Until(until), func() bool { return strings.Contains(waiter.out.String(), "gpus=GPU-") }) {
		t.Fatalf("bo has waited %s in the queue while amy's GPU container has been idle for %s (idle_timeout %s, to be halved to %s while someone waits)\nbo's stderr: %q\namy's stderr: %q",
			since(queued), since(active), idle, idle/2, waiter.err.String(), holder.err.String())
	}
	if d := time.Since(active); d < idle/2-5*time.Second {
		t.Errorf("amy's container was stopped %s after her last activity, before even half of idle_timeout %s", d.Round(time.Second), idle)
	}
	if v := visible(waiter.out.String()); strings.Count(v, "GPU-") != 3 {
		t.Errorf("bo asked for 3 GPUs, got %q", v)
	}

	select {
	case <-holder.done:
	case <-time.After(lcSlack):
		t.Errorf("amy's session still runs after her container was stopped for bo")
	}
	var waiting, stopped bool
	for _, l := range noticeLines(holder.err.String()) {
		waiting = waiting || (strings.Contains(l, "waiting") && !stopped)
		stopped = stopped || isStop(l)
	}
	if !waiting || !stopped {
		t.Errorf("amy was told someone waits: %v, then that her container stopped: %v\namy's stderr: %q", waiting, stopped, holder.err.String())
	}
	if a := g.alerts(t, amy, proj); !strings.Contains(a, "waiting") {
		t.Errorf("amy's .ds01-alerts does not say someone was waiting:\n%s", a)
	}
}

// (h) After an idle stop the owner keeps the GPU for gpu_hold_after_stop:
// another user who need not wait gets the other GPU, and the owner's
// reconnect gets the same GPU back.
func TestLifecycleGPUHoldSameGPUOnReconnect(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "2"},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String(), "gpu_hold_after_stop", "2m")})
	hal := g.addUser(t, "hal", 26091, 26091)
	dan := g.addUser(t, "dan", 26092, 26092)
	const proj = "p"

	g.mustSSH(t, dan, proj+"+cpu", "true") // dan's image, built before it matters
	waitContainers(t, dan.uid, proj, 0, g.retire+lcSlack)

	first := visible(g.mustSSH(t, hal, proj, gpuEnv+"; "+detachIdle))
	left := time.Now()
	if !strings.HasPrefix(first, "GPU-") {
		t.Fatalf("hal's login got no GPU: %q", first)
	}
	if !waitFor(idle+lcGrace+lcSlack, func() bool { return len(containers(t, hal.uid, proj)) == 0 }) {
		t.Fatalf("hal's idle GPU container still runs %s after he left (idle_timeout %s)", since(left), idle)
	}
	stopped := time.Now()
	if d := stopped.Sub(left); d < idle-4*time.Second || !strings.Contains(g.alerts(t, hal, proj), "stopped") {
		t.Fatalf("hal's container went %s after he left, not by an idle stop (idle_timeout %s)\n.ds01-alerts: %q", d.Round(time.Second), idle, g.alerts(t, hal, proj))
	}

	other := g.startSSH(t, dan, proj, gpuEnv+"; sleep 300")
	other.waitOutput(t, "gpus=GPU-", timeoutShort)
	if got := visible(other.out.String()); got == first {
		t.Errorf("dan got %s, the GPU held for hal after his idle stop, though another GPU was free", got)
	}
	again := visible(g.mustSSH(t, hal, proj, gpuEnv))
	if again != first {
		t.Errorf("hal reconnected %s after his idle stop (gpu_hold_after_stop 2m) and got %q, want his GPU %s back", since(stopped), again, first)
	}
}

// (h) The hold is dropped at once for someone who would otherwise wait.
func TestLifecycleGPUHoldDroppedForWaiter(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "1", "gpu_queue_timeout": "5m"},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String(), "gpu_hold_after_stop", "5m")})
	hob := g.addUser(t, "hob", 26101, 26101)
	wes := g.addUser(t, "wes", 26102, 26102)
	const proj = "p"

	g.mustSSH(t, wes, proj+"+cpu", "true")
	waitContainers(t, wes.uid, proj, 0, g.retire+lcSlack)

	held := visible(g.mustSSH(t, hob, proj, gpuEnv+"; "+detachIdle))
	left := time.Now()
	if !waitFor(idle+lcGrace+lcSlack, func() bool { return len(containers(t, hob.uid, proj)) == 0 }) {
		t.Fatalf("hob's idle GPU container still runs %s after he left (idle_timeout %s)", since(left), idle)
	}
	if d := time.Since(left); d < idle-4*time.Second || !strings.Contains(g.alerts(t, hob, proj), "stopped") {
		t.Fatalf("hob's container went %s after he left, not by an idle stop (idle_timeout %s)\n.ds01-alerts: %q", d.Round(time.Second), idle, g.alerts(t, hob, proj))
	}

	asked := time.Now()
	waiter := g.startSSH(t, wes, proj, gpuEnv+"; sleep 300")
	if !waitFor(15*time.Second, func() bool { return strings.Contains(waiter.out.String(), "gpus=GPU-") }) {
		t.Fatalf("wes has waited %s for the only GPU, free but held for hob after his idle stop (gpu_hold_after_stop 5m): the hold was not dropped for him\nwes's stderr: %q",
			since(asked), waiter.err.String())
	}
	if got := visible(waiter.out.String()); got != held {
		t.Errorf("wes got %q, want the only GPU %s", got, held)
	}
}
