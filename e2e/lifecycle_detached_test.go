package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// busyJob burns about a tenth of a core (well over cpu_idle_threshold,
// 2 %) for 25 s, then writes /workspace/out: a training run in miniature.
const busyJob = `end=$(( $(date +%s) + 25 ))
while [ "$(date +%s)" -lt "$end" ]; do
  head -c 10000000 /dev/urandom | md5sum >/dev/null
  sleep 0.5
done
echo done > /workspace/out
`

// (a) `ssh p@host 'nohup job &'`, then the laptop closes: the job runs to
// its end in a detached container, which retires shortly after.
func TestLifecycleBusyDetachedJobCompletes(t *testing.T) {
	t.Parallel()
	// A container without GPUs that is idle while detached would go
	// after 10 s: the job's CPU use must keep it.
	g := startGateway(t, gwOpts{RetireAfter: "3s", Lifecycle: lifecycleBlock("idle_timeout_no_gpu", "10s")})
	u := g.addUser(t, "ada", 26001, 26001)
	const proj = "train"
	if r := g.sshIn(t, u, proj, strings.NewReader(busyJob), "cat > /workspace/job.sh"); r.code != 0 {
		t.Fatalf("upload job: %s", r)
	}
	g.mustSSH(t, u, proj, `nohup sh /workspace/job.sh >/dev/null 2>&1 &`)
	left := time.Now()
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("right after the client left: want 1 container, have %v", ids)
	}
	out := filepath.Join(g.workspace(u, proj), "out")

	// Past retire_after and past idle_timeout_no_gpu plus the SIGTERM
	// grace: the container is still there, detached.
	time.Sleep(g.retire + 10*time.Second + lcGrace)
	if got := containers(t, u.uid, proj); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("%s after the client left, while the job still ran, the container was gone (have %v): "+
			"the user's nohup job was killed\n.ds01-alerts: %q", since(left), got, g.alerts(t, u, proj))
	}
	if c := g.container(t, u, proj); c == nil || !c.detached() {
		t.Errorf("container-list while the job runs with nobody connected: want it detached, got %v", c)
	}

	if !waitFor(25*time.Second+lcSlack, func() bool { _, err := os.Stat(out); return err == nil }) {
		t.Fatalf("/workspace/out did not appear %s after the client left: the job did not complete (containers %v)\n.ds01-alerts: %q",
			since(left), containers(t, u.uid, proj), g.alerts(t, u, proj))
	}
	ended := time.Now()
	if b, _ := os.ReadFile(out); string(b) != "done\n" {
		t.Errorf("/workspace/out = %q, want %q", b, "done\n")
	}
	// The work ended: the container retires retire_after later.
	if !waitFor(g.retire+2*lcCheck+lcSlack, func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Errorf("the job ended, but its container still runs %s later (retire_after %s): it holds resources for nothing: %v",
			since(ended), g.retire, g.container(t, u, proj))
	}
	if a := g.alerts(t, u, proj); strings.Contains(a, "stopped") {
		t.Errorf("a busy job's container was reported stopped:\n%s", a)
	}
}

// (b) An idle process left behind (nohup sleep) keeps a GPU-less container
// only for idle_timeout_no_gpu; the user then finds why in .ds01-alerts,
// and is told once at the next login.
func TestLifecycleIdleDetachedReclaimed(t *testing.T) {
	t.Parallel()
	const idle = 20 * time.Second
	g := startGateway(t, gwOpts{RetireAfter: "3s", Lifecycle: lifecycleBlock("idle_timeout_no_gpu", idle.String())})
	u := g.addUser(t, "bea", 26011, 26012)
	const proj = "idle"
	g.mustSSH(t, u, proj, detachIdle)
	left := time.Now()

	time.Sleep(g.retire + 5*time.Second)
	if got := containers(t, u.uid, proj); len(got) != 1 {
		t.Fatalf("%s after the client left (retire_after %s), with `nohup sleep` still running: want the container kept, have %v",
			since(left), g.retire, got)
	}
	if c := g.container(t, u, proj); c == nil || !c.detached() {
		t.Errorf("container-list: want the container detached, got %v", c)
	}

	if !waitFor(idle+lcGrace+lcSlack-time.Since(left), func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("an idle detached container still runs %s after the client left (idle_timeout_no_gpu %s)\n.ds01-alerts: %q",
			since(left), idle, g.alerts(t, u, proj))
	}
	if d := time.Since(left); d < idle-4*time.Second {
		t.Errorf("the container was reclaimed %s after the client left, before idle_timeout_no_gpu %s", d.Round(time.Second), idle)
	}

	path := g.alertsPath(u, proj)
	a := g.alerts(t, u, proj)
	if a == "" {
		t.Fatalf("no %s: the user cannot tell why the container is gone", path)
	}
	if uid, gid := fileOwner(t, path); uid != u.uid || gid != u.gid {
		t.Errorf(".ds01-alerts owned by %d:%d, want the user's %d:%d", uid, gid, u.uid, u.gid)
	}
	lines := parseAlerts(t, a)
	last := lines[len(lines)-1].text
	if !isStop(last) || !strings.Contains(last, "idle") || !strings.Contains(last, proj) {
		t.Errorf(".ds01-alerts: want the last line to say %s was stopped for being idle, got:\n%s", proj, a)
	}
	if !strings.Contains(a, ".keep-alive") {
		t.Errorf(".ds01-alerts does not say how to keep a container (.keep-alive):\n%s", a)
	}

	// Nobody was connected to hear it: the next login says so, once.
	r := g.ssh(t, u, proj, "true")
	if r.code != 0 || !strings.Contains(r.stderr, "while you were away") || !strings.Contains(r.stderr, "stopped") {
		t.Errorf("next login after the idle stop: want the stop notice (\"while you were away\"): %s", r)
	}
	if r := g.ssh(t, u, proj, "true"); strings.Contains(r.stderr, "while you were away") {
		t.Errorf("the stop notice was shown again at a second login: %q", r.stderr)
	}
}

// (j) The gateway dies (kill -9) while a detached job runs; the restarted
// gateway adopts the container instead of retiring it, the job completes,
// and the container retires after it.
func TestLifecycleKill9KeepsDetachedJob(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOpts{RetireAfter: "3s", Lifecycle: lifecycleBlock()})
	u := g.addUser(t, "jon", 26021, 26021)
	const proj = "upgrade"
	g.mustSSH(t, u, proj, `nohup sh -c "sleep 20; echo done > /workspace/out" >/dev/null 2>&1 &`)
	started := time.Now()
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("right after the client left: want 1 container, have %v", ids)
	}

	time.Sleep(2 * time.Second)
	g.kill9(t)
	g.start(t)
	restarted := time.Now()

	time.Sleep(g.retire + 5*time.Second)
	if got := containers(t, u.uid, proj); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("%s after a gateway restart the container of a running job was gone (have %v, had %v): the restart killed the user's job",
			since(restarted), got, ids)
	}
	if c := g.container(t, u, proj); c == nil || !c.detached() {
		t.Errorf("container-list after the restart: want the adopted container detached, got %v", c)
	}

	out := filepath.Join(g.workspace(u, proj), "out")
	if !waitFor(20*time.Second+lcSlack-time.Since(started), func() bool { _, err := os.Stat(out); return err == nil }) {
		t.Fatalf("/workspace/out did not appear %s after the job started: the job did not survive the restart (containers %v)",
			since(started), containers(t, u.uid, proj))
	}
	ended := time.Now()
	if !waitFor(g.retire+2*lcCheck+lcSlack, func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Errorf("the job ended, but the adopted container still runs %s later (retire_after %s)", since(ended), g.retire)
	}
}

// (k) A container with nothing left running retires at the grace, as
// before: detaching is only for work that goes on.
func TestLifecycleNothingRunningRetiresAtGrace(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOpts{RetireAfter: "3s"})
	u := g.addUser(t, "kim", 26031, 26031)
	const proj = "done"
	g.mustSSH(t, u, proj, "true")
	left := time.Now()
	if got := containers(t, u.uid, proj); len(got) != 1 {
		t.Fatalf("right after logout: want the container kept for the grace, have %v", got)
	}
	if !waitFor(g.retire+2*lcCheck+lcSlack, func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("nothing runs in the container, yet it is still there %s after logout (retire_after %s)", since(left), g.retire)
	}
	// The same with a background command that ends soon after logout:
	// retire_after after it ends.
	g.mustSSH(t, u, proj, `sleep 2 >/dev/null 2>&1 &`)
	left = time.Now()
	if !waitFor(2*time.Second+g.retire+2*lcCheck+lcSlack, func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("a background sleep 2 ended, yet its container is still there %s after logout (retire_after %s)", since(left), g.retire)
	}
}

// container-keep holds an idle container past its idle stop for the
// lease it asked for, shows the lease in container-list, and refuses
// hostile or mistaken input with one line and exit code, touching nothing.
func TestLifecycleContainerKeep(t *testing.T) {
	t.Parallel()
	const idle = 15 * time.Second
	g := startGateway(t, gwOpts{RetireAfter: "3s", Lifecycle: lifecycleBlock("idle_timeout_no_gpu", idle.String())})
	u := g.addUser(t, "kim", 26110, 26110)
	const proj = "kept"
	g.mustSSH(t, u, proj, detachIdle)
	left := time.Now()

	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"container-keep", "../etc", "--for", "1h"}, 2, "invalid"},
		{[]string{"container-keep", proj, "--for", "forever"}, 2, "--for"},
		{[]string{"container-keep", proj, "--for", "-1h"}, 2, "--for"},
		{[]string{"container-keep", proj, "--for", "1000h"}, 1, "keep"},
		{[]string{"container-keep", "nothing-here"}, 1, "no running container"},
	} {
		r := g.ssh(t, u, "ds01", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 || r.stdout != "" {
			t.Errorf("%v: want exit %d and a short line saying %q on stderr, got %s", tc.args, tc.code, tc.says, r)
		}
	}

	r := g.ssh(t, u, "ds01", "container-keep", proj, "--for", "40s")
	if r.code != 0 || !strings.Contains(r.stderr, "kept") {
		t.Fatalf("container-keep %s --for 40s: %s", proj, r)
	}
	kept := time.Now()
	if c := g.container(t, u, proj); c == nil || c["keep_until"] == nil {
		t.Errorf("container-list does not show the keep lease: %v", c)
	}
	// Past the idle stop it would have had without the lease.
	time.Sleep(time.Until(left.Add(idle + lcGrace + lcSlack)))
	if got := containers(t, u.uid, proj); len(got) != 1 {
		t.Fatalf("%s after the client left, with a 40s keep lease: the container is gone (idle_timeout_no_gpu %s)", since(left), idle)
	}
	if !waitFor(time.Until(kept.Add(40*time.Second+idle/3+lcGrace+lcSlack)), func() bool { return len(containers(t, u.uid, proj)) == 0 }) {
		t.Fatalf("the container still runs %s after its 40s keep lease began", since(kept))
	}
	if d := time.Since(kept); d < 40*time.Second {
		t.Errorf("stopped %s into a 40s keep lease", d.Round(time.Second))
	}
}
