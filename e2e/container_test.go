package e2e

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// TestContainerDefaults checks what the issue promises about every project
// container: security defaults, limits, labels, environment filtering, the
// hang-up of a terminal session, and a background child not holding an
// exec open. One gateway, one project, so the image is built once.
func TestContainerDefaults(t *testing.T) {
	g := startGateway(t, gwOpts{}) // the held session keeps the container
	u := g.addUser(t, "dora", 20091, 20091)
	const proj = "defaults"
	hold := g.startSSH(t, u, proj, "echo up && sleep 120")
	hold.waitOutput(t, "up", 2*time.Minute)
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("want 1 container, have %v", ids)
	}
	id := ids[0]

	t.Run("security", func(t *testing.T) {
		got := docker(t, "inspect", "-f",
			`{{.HostConfig.CapDrop}}|{{.HostConfig.SecurityOpt}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.Memory}}|{{.HostConfig.NanoCpus}}|{{.HostConfig.ShmSize}}|{{.Config.User}}|{{.HostConfig.Privileged}}`, id)
		f := strings.Split(strings.TrimSpace(got), "|")
		if len(f) != 8 {
			t.Fatalf("inspect: %q", got)
		}
		checks := map[string]bool{
			"all capabilities dropped": strings.Contains(f[0], "ALL"),
			"no-new-privileges":        strings.Contains(f[1], "no-new-privileges"),
			"pids limit":               f[2] != "0" && f[2] != "<nil>",
			"memory limit":             f[3] != "0",
			"cpu limit":                f[4] != "0",
			"shm size":                 f[5] != "0",
			"runs as the user":         f[6] == "20091:20091",
			"not privileged":           f[7] == "false",
		}
		for what, ok := range checks {
			if !ok {
				t.Errorf("%s: inspect says %q", what, got)
			}
		}
		// From inside: no effective capabilities, no_new_privs set.
		out := g.mustSSH(t, u, proj, `grep -E '^(CapEff|NoNewPrivs):' /proc/self/status`)
		if !strings.Contains(out, "CapEff:\t0000000000000000") || !strings.Contains(out, "NoNewPrivs:\t1") {
			t.Errorf("inside the container: %q", out)
		}
	})

	t.Run("labels", func(t *testing.T) {
		got := docker(t, "inspect", "-f", `{{index .Config.Labels "ds01.user"}} {{index .Config.Labels "ds01.uid"}} {{index .Config.Labels "ds01.project"}} {{index .Config.Labels "ds01.created-at"}} {{index .Config.Labels "ds01.instance"}}`, id)
		f := strings.Fields(got)
		if len(f) != 5 || f[0] != "dora" || f[1] != "20091" || f[2] != proj {
			t.Fatalf("labels: %q", got)
		}
		if _, err := time.Parse(time.RFC3339, f[3]); err != nil {
			t.Errorf("ds01.created-at %q: %v", f[3], err)
		}
	})

	t.Run("env_allowlist", func(t *testing.T) {
		args := append(g.sshArgs(u.key, proj, "-o", "SetEnv=LC_DS01=ok GIT_PROTOCOL=version=2 LD_PRELOAD=/evil.so DS01_EVIL=1"),
			`printf '%s|%s|%s|%s\n' "$LC_DS01" "$GIT_PROTOCOL" "$LD_PRELOAD" "$DS01_EVIL"`)
		r := runSSH(t, 30*time.Second, nil, args...)
		if r.code != 0 || r.stdout != "ok|version=2||\n" {
			t.Errorf("want only allowlisted variables: %s", r)
		}
	})

	t.Run("pty_hangup", func(t *testing.T) {
		// A terminal session's process group is hung up when its channel
		// closes, as under sshd: the sleep must not outlive the client.
		b := g.startSSH(t, u, proj, "-tt", "sleep 4242")
		waitProcess(t, g, u, proj, "sleep 4242", true, 30*time.Second)
		b.stop()
		waitProcess(t, g, u, proj, "sleep 4242", false, 10*time.Second)
	})

	t.Run("exec_hangup", func(t *testing.T) {
		// A non-terminal session's process is hung up when its client goes
		// away; what it started in the background stays (VS Code's server).
		b := g.startSSH(t, u, proj, "nohup sleep 4545 >/dev/null 2>&1 & exec sleep 4444")
		waitProcess(t, g, u, proj, "sleep 4444", true, 30*time.Second)
		b.stop()
		waitProcess(t, g, u, proj, "sleep 4444", false, 10*time.Second)
		if !strings.Contains(g.mustSSH(t, u, proj, "ps -eo args"), "sleep 4545") {
			t.Error("the background process did not survive its session")
		}
	})

	t.Run("background_child", func(t *testing.T) {
		// A child that keeps stdout open must not keep `ssh` waiting.
		start := time.Now()
		r := g.ssh(t, u, proj, "sleep 60 & echo started")
		if r.code != 0 || r.stdout != "started\n" {
			t.Errorf("%s", r)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("ssh returned after %s", d)
		}
	})

	hold.stop()
	// What the subtests left running (sleep 4545, sleep 60) is the user's
	// work: the container stays, detached, past the grace; once that work
	// ends it retires at the grace.
	time.Sleep(g.retire + 3*time.Second)
	if ids := containers(t, u.uid, proj); len(ids) != 1 {
		t.Fatalf("with background jobs still running, containers %v: want the one, detached", ids)
	}
	g.mustSSH(t, u, proj, "pkill -f 'sleep (4545|60)$'; true")
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)

	t.Run("events", func(t *testing.T) {
		st, err := store.Open(context.Background(), filepath.Join(g.dataDir, "ds01.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		evs, err := st.ListEvents(context.Background(), store.EventFilter{User: "dora", Project: proj})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]time.Duration{}
		for _, e := range evs {
			if _, ok := seen[e.Type]; !ok || e.Duration > seen[e.Type] {
				seen[e.Type] = e.Duration
			}
		}
		for _, typ := range []string{"project.create", "image.build", "container.launch", "container.attach", "container.detach", "container.retire"} {
			if _, ok := seen[typ]; !ok {
				t.Errorf("no %s event (have %v)", typ, seen)
			}
		}
		for _, typ := range []string{"image.build", "container.launch", "container.retire"} {
			if seen[typ] <= 0 {
				t.Errorf("%s event has no duration", typ)
			}
		}
	})
}

// waitProcess waits until a process whose command line contains args is
// (running) or is not (!running) in the user's container.
func waitProcess(t *testing.T, g *gw, u *user, proj, args string, running bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Contains(g.mustSSH(t, u, proj, "ps -eo args"), args) != running {
		if time.Now().After(deadline) {
			t.Fatalf("%q: running should be %v, still is not after %s", args, running, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A client that connects and never authenticates is dropped after
// handshake_timeout.
func TestHandshakeTimeout(t *testing.T) {
	g := startGateway(t, gwOpts{Extra: map[string]string{"handshake_timeout": "1s"}})
	conn, err := net.Dial("tcp", g.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetReadDeadline(start.Add(15 * time.Second))
	// Read the server's banner, say nothing, and wait for the close.
	_, err = io.Copy(io.Discard, conn)
	if d := time.Since(start); err != nil || d > 10*time.Second {
		t.Errorf("an unauthenticated connection was kept %s (err %v) with handshake_timeout 1s", d, err)
	}
}
