package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two connections to one user+project share a single container.
func TestConcurrentConnectionsShareContainer(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "cora", 20021, 20021)
	const proj = "shared"

	first := g.startSSH(t, u, proj, `echo $$ > /tmp/marker && echo started && sleep 60`)
	first.waitOutput(t, "started", 2*time.Minute)

	r := g.ssh(t, u, proj, "cat /tmp/marker")
	if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("second connection cannot see the first one's /tmp/marker: %s", r)
	}
	if ids := containers(t, u.uid, proj); len(ids) != 1 {
		t.Errorf("want 1 container for %s, have %d: %v", proj, len(ids), ids)
	}

	// Closing the first connection ends its session; the container then
	// retires like any other.
	first.stop()
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)
}

// After the last connection closes the container stays for retire_after (a
// quick reconnect reuses it) and is removed after that.
func TestRetireAfterGrace(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "3s"})
	u := g.addUser(t, "rita", 20031, 20031)
	const proj = "grace"

	g.mustSSH(t, u, proj, "true") // builds; not timed
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)

	g.mustSSH(t, u, proj, "true")
	loggedOut := time.Now()
	before := containers(t, u.uid, proj)
	if len(before) != 1 {
		t.Fatalf("right after logout: want 1 container (in grace), have %v", before)
	}
	g.mustSSH(t, u, proj, "true")
	if since := time.Since(loggedOut); since >= g.retire {
		t.Skipf("reconnect took %s, longer than retire_after; cannot check reuse", since)
	}
	after := containers(t, u.uid, proj)
	if len(after) != 1 || after[0] != before[0] {
		t.Errorf("reconnect within grace: container %v, then %v; want the same one", before, after)
	}

	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)
}

// Files in /workspace outlive the container, owned by the user on the host.
func TestWorkspacePersistsAcrossRetire(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "pia", 20041, 20042)
	const proj = "keep"

	g.mustSSH(t, u, proj, "echo persisted > /workspace/note.txt")
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)

	host := filepath.Join(g.workspace(u, proj), "note.txt")
	b, err := os.ReadFile(host)
	if err != nil {
		t.Fatalf("host copy: %v", err)
	}
	if string(b) != "persisted\n" {
		t.Errorf("host copy: %q", b)
	}
	if uid, gid := fileOwner(t, host); uid != u.uid || gid != u.gid {
		t.Errorf("host copy owned by %d:%d, want %d:%d", uid, gid, u.uid, u.gid)
	}

	if out := g.mustSSH(t, u, proj, "cat /workspace/note.txt"); out != "persisted\n" {
		t.Errorf("after retire: cat = %q", out)
	}
}
