package e2e

import (
	"strings"
	"testing"
	"time"
)

// One user's container cannot reach another user's listening ports.
func TestNetworkIsolationBetweenUsers(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "nora", 20111, 20111)
	b := g.addUser(t, "otto", 20112, 20112)

	// Build B's image first so the listener's session is not waiting on it.
	g.mustSSH(t, b, "cli", "true")

	listener := g.startSSH(t, a, "srv", "echo listening; exec nc -lk 8080")
	listener.waitOutput(t, "listening", timeoutLong)
	ids := containers(t, a.uid, "srv")
	if len(ids) != 1 {
		t.Fatalf("want 1 container for A, have %v", ids)
	}
	ips := fields(docker(t, "inspect", "--format",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", ids[0]))
	if len(ips) == 0 {
		t.Skip("A's container has no IP address: nothing to reach")
	}

	for _, ip := range ips {
		// Sanity: the listener works (from A's own container), so a failure
		// from B means isolation, not a dead listener.
		probe := "nc -z -w 3 " + ip + " 8080"
		reached := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if g.ssh(t, a, "srv", probe).code == 0 {
				reached = true
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !reached {
			t.Fatalf("A cannot reach its own listener at %s:8080; listener stderr %q",
				ip, listener.err.String())
		}

		r := g.ssh(t, b, "cli", probe)
		if r.code == 0 {
			t.Errorf("B's container reached A's %s:8080", ip)
		} else if strings.Contains(r.stderr, "not found") {
			t.Errorf("probe from B did not run: %s", r)
		}

		if r := g.ssh(t, a, "srv", probe); r.code != 0 {
			t.Errorf("A's listener gone after B's probe: %s", r)
		}
	}
}
