package e2e

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// (c, f) A terminal left open on a GPU container, unused: the user sees two
// idle warnings on that terminal, in order, then the stop, which ends the
// session. .ds01-alerts has the same three lines in the same order, the
// last warning in time to act on it.
func TestLifecycleIdleGPUSessionWarnedThenStopped(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	// Two GPUs, one in use: no pressure, whose notices would mix in.
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "2"},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String())})
	u := g.addUser(t, "cid", 26041, 26041)
	const proj = "desk"

	term := g.startSSHWith(t, u, proj, []string{"-tt"}) // a login shell on a terminal
	if _, err := io.WriteString(term.stdin, "echo ready-$((6*7)) $NVIDIA_VISIBLE_DEVICES\n"); err != nil {
		t.Fatal(err)
	}
	term.waitOutput(t, "ready-42 GPU-", timeoutLong)
	typed := time.Now() // the last activity: the user typed, then went away

	select {
	case <-term.done:
	case <-time.After(idle + lcGrace + lcSlack):
		t.Fatalf("an idle GPU session still runs %s after the user's last keystroke (idle_timeout %s)\nterminal: %q\n.ds01-alerts: %q",
			since(typed), idle, term.err.String()+term.out.String(), g.alerts(t, u, proj))
	}
	if d := time.Since(typed); d < idle-4*time.Second {
		t.Errorf("the session ended %s after the last keystroke, before idle_timeout %s", d.Round(time.Second), idle)
	}
	waitContainers(t, u.uid, proj, 0, lcSlack)

	// On the terminal: warning, warning, stop. (The session's own last
	// line repeats why it ended; it comes after.)
	terminal := term.err.String() + term.out.String()
	notices := noticeLines(term.err.String())
	var termWarns []string
	stopped := false
	for _, l := range notices {
		if isStop(l) {
			stopped = true
			break
		}
		if strings.Contains(l, "idle") {
			termWarns = append(termWarns, l)
		}
	}
	if len(termWarns) != 2 || !stopped {
		t.Errorf("the terminal showed %d idle warnings and stop=%v, want two warnings then the stop\nterminal: %q", len(termWarns), stopped, terminal)
	}
	if len(termWarns) > 0 && !strings.Contains(termWarns[0], ".keep-alive") {
		t.Errorf("the first warning does not say how to keep the container (.keep-alive): %q", termWarns[0])
	}

	// In .ds01-alerts: the same, the last warning at least its lead (a
	// third of the timeout here) before the stop.
	a := g.alerts(t, u, proj)
	lines := parseAlerts(t, a)
	var warns []alertLine
	var stop *alertLine
	for i, l := range lines {
		switch {
		case isStop(l.text) && stop == nil:
			stop = &lines[i]
		case strings.Contains(l.text, "idle") && stop == nil:
			warns = append(warns, l)
		}
	}
	switch {
	case stop == nil:
		t.Errorf(".ds01-alerts has no stop notice:\n%s", a)
	case len(warns) != 2:
		t.Errorf(".ds01-alerts: want 2 idle warnings before the stop, got %d:\n%s", len(warns), a)
	default:
		if lead := stop.at.Sub(warns[1].at); lead < idle/3-2*time.Second {
			t.Errorf("the last warning came %s before the stop, want about %s (a third of idle_timeout):\n%s", lead, idle/3, a)
		}
		if !strings.Contains(stop.text, "idle") {
			t.Errorf("the stop notice does not say why (idle): %q", stop.text)
		}
	}
}

// (d) A GPU that computes (utilisation 90 %) is activity: its container is
// kept past idle_timeout, connected or not. When the GPU falls idle, the
// idle clock runs again.
func TestLifecycleGPUBusyKept(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	util := t.TempDir()
	g := startGateway(t, gwOpts{RetireAfter: "3s",
		Extra:     map[string]string{"fake_gpus": "2", "fake_gpu_utilization_dir": util},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String())})
	u := g.addUser(t, "dov", 26051, 26051)
	const proj = "busy"
	setGPUUtil(t, util, 0, 90)
	setGPUUtil(t, util, 1, 90)

	out := g.mustSSH(t, u, proj, gpuEnv+"; "+detachIdle)
	left := time.Now()
	if !strings.HasPrefix(visible(out), "GPU-") {
		t.Fatalf("no GPU for the login: %q", out)
	}
	time.Sleep(2*idle + lcGrace)
	if got := containers(t, u.uid, proj); len(got) != 1 {
		t.Fatalf("a container whose GPU computes at 90 %% was gone when checked %s after the user left (idle_timeout %s)\n.ds01-alerts: %q",
			since(left), idle, g.alerts(t, u, proj))
	}
	if a := g.alerts(t, u, proj); strings.Contains(a, "idle") {
		t.Errorf("a busy GPU container was warned as idle:\n%s", a)
	}

	// The job's GPU work ends: now it is idle, and goes.
	clearGPUUtil(t, util, 0)
	clearGPUUtil(t, util, 1)
	quiet := time.Now()
	if !waitFor(idle+lcGrace+lcSlack, func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("the GPU has been idle for %s, yet the container still runs (idle_timeout %s)\n.ds01-alerts: %q",
			since(quiet), idle, g.alerts(t, u, proj))
	}
	if d := time.Since(quiet); d < idle-4*time.Second {
		t.Errorf("stopped %s after the GPU fell idle, before idle_timeout %s", d.Round(time.Second), idle)
	}
}

// (e) /workspace/.keep-alive postpones the idle stop, but never the
// maximum runtime.
func TestLifecycleKeepAliveCannotBeatMaxRuntime(t *testing.T) {
	t.Parallel()
	const idle, maxRun = 20 * time.Second, 70 * time.Second
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "2"},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String(), "max_runtime", maxRun.String())})
	u := g.addUser(t, "eve", 26061, 26061)
	const proj = "keep"

	g.mustSSH(t, u, proj, "touch /workspace/.keep-alive; "+detachIdle)
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("want 1 container, have %v", ids)
	}
	start := startedAt(t, ids[0])

	time.Sleep(time.Until(start.Add(2*idle + lcGrace)))
	if got := containers(t, u.uid, proj); len(got) != 1 {
		t.Fatalf("with /workspace/.keep-alive touched, the idle container was gone when checked %s after it started (idle_timeout %s)\n.ds01-alerts: %q",
			since(start), idle, g.alerts(t, u, proj))
	}

	if !waitFor(time.Until(start.Add(maxRun+lcGrace+lcSlack)), func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("the container still runs %s after it started, past max_runtime %s: .keep-alive beat the maximum runtime\n.ds01-alerts: %q",
			since(start), maxRun, g.alerts(t, u, proj))
	}
	if d := time.Since(start); d < maxRun-3*time.Second {
		t.Errorf("stopped %s after it started, before max_runtime %s", d.Round(time.Second), maxRun)
	}
	a := g.alerts(t, u, proj)
	lines := parseAlerts(t, a)
	if len(lines) < 2 {
		t.Fatalf(".ds01-alerts: want runtime warnings and the stop, got:\n%s", a)
	}
	last := lines[len(lines)-1].text
	if !isStop(last) || !strings.Contains(last, "maximum runtime") {
		t.Errorf(".ds01-alerts: want the last line to say it was stopped at its maximum runtime, got:\n%s", a)
	}
	warned := false
	for _, l := range lines[:len(lines)-1] {
		warned = warned || (strings.Contains(l.text, "maximum runtime") && !isStop(l.text))
	}
	if !warned {
		t.Errorf(".ds01-alerts: want a maximum runtime warning before the stop, got:\n%s", a)
	}
	for _, l := range lines {
		if isStop(l.text) && strings.Contains(l.text, "idle") && !strings.Contains(l.text, "maximum runtime") {
			t.Errorf("stopped for being idle despite .keep-alive: %q", l.text)
		}
	}
}

// (i) An exemption from idle_timeout_h in DS01's lifecycle-exemptions.yaml
// keeps an idle container, with notices marked as information; an expired
// one (a bare YAML date, which DS01 ignores) does not.
func TestLifecycleExemption(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	dir := t.TempDir()
	limits := lcLimits(t, dir, "")
	day := func(d int) string { return time.Now().UTC().AddDate(0, 0, d).Format(time.DateOnly) }
	exemptions := fmt.Sprintf(`exemptions:
  - username: ivy
    exempt_from: [idle_timeout_h]
    expires_on: %s
    reason: thesis deadline
  - username: ole
    exempt_from: [idle_timeout_h]
    expires_on: %s
    reason: last term
`, day(2), day(-1))
	writeFile(t, filepath.Join(dir, "lifecycle-exemptions.yaml"), exemptions)
	// Four GPUs, two in use: no pressure.
	g := startGateway(t, gwOpts{RetireAfter: "3s", Extra: map[string]string{"fake_gpus": "4", "limits_file": limits},
		Lifecycle: lifecycleBlock("idle_timeout", idle.String())})
	ivy := g.addUser(t, "ivy", 26071, 26071)
	ole := g.addUser(t, "ole", 26072, 26072)
	const proj = "exempt"

	g.mustSSH(t, ole, proj, detachIdle)
	oleLeft := time.Now()
	g.mustSSH(t, ivy, proj, detachIdle)
	ivyLeft := time.Now()

	if !waitFor(idle+lcGrace+lcSlack-time.Since(oleLeft), func() bool { return len(containers(t, ole.uid, proj)) == 0 }) {
		t.Errorf("ole's exemption expired yesterday (expires_on %s), yet his idle container still runs %s after he left (idle_timeout %s)\n.ds01-alerts: %q",
			day(-1), since(oleLeft), idle, g.alerts(t, ole, proj))
	} else if a := g.alerts(t, ole, proj); !strings.Contains(a, "stopped") || isInfo(a) || time.Since(oleLeft) < idle-4*time.Second {
		t.Errorf("ole's container went %s after he left: want an idle stop (idle_timeout %s) with a plain stop notice\n.ds01-alerts: %q", since(oleLeft), idle, a)
	}

	time.Sleep(time.Until(ivyLeft.Add(2*idle + lcGrace)))
	if got := containers(t, ivy.uid, proj); len(got) != 1 {
		t.Fatalf("ivy is exempt from idle_timeout_h until %s, yet her idle container was gone %s after she left\n.ds01-alerts: %q",
			day(2), since(ivyLeft), g.alerts(t, ivy, proj))
	}
	a := g.alerts(t, ivy, proj)
	lines := parseAlerts(t, a)
	if len(lines) == 0 {
		t.Fatalf("ivy got no notice: an exempt user still gets them, marked (info)")
	}
	for _, l := range lines {
		if !isInfo(l.text) {
			t.Errorf("an exempt user's notice is not marked (info): %q", l.text)
		}
	}
	if !strings.Contains(a, "exempt") {
		t.Errorf("ivy's notices do not say she is exempt:\n%s", a)
	}
}
