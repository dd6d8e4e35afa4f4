package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// E2E uids of these tests: 21000-21099.

// mustGoClient connects with x/crypto's client, which (unlike OpenSSH's)
// can open hundreds of channels on one connection.
func (g *gw) mustGoClient(t *testing.T, u *user, login string) *ssh.Client {
	t.Helper()
	c, err := g.goClient(t, u.key, login)
	if err != nil {
		t.Fatalf("connect as %s: %v", login, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// threads is the gateway process's OS thread count.
func (g *gw) threads(t *testing.T) int {
	t.Helper()
	g.mu.Lock()
	pid := g.cmd.Process.Pid
	g.mu.Unlock()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line")
	return 0
}

// openSessions opens n session channels on c at once and starts cmd on
// each; it returns the sessions that opened and the refusals.
func openSessions(c *ssh.Client, n int, cmd string) (open []*ssh.Session, refused []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.NewSession()
			if err == nil {
				if err = s.Start(cmd); err != nil {
					s.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused = append(refused, err)
			} else {
				open = append(open, s)
			}
		}()
	}
	wg.Wait()
	return open, refused
}

// 300 session channels on one connection: 10 run (max_sessions), the rest
// are refused with the reason, and the gateway's threads stay bounded (the
// old gateway went from 42 to 771 threads; Go aborts at 10,000).
func TestManySessionChannelsOneConnection(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addUser(t, "maxi", 21001, 21001)
	const proj = "chans"
	g.mustSSH(t, u, proj, "true") // build the image and start the container
	c := g.mustGoClient(t, u, proj)
	if r := g.ssh(t, u, proj, "true"); r.code != 0 {
		t.Fatal(r)
	}
	before := g.threads(t)

	open, refused := openSessions(c, 300, "sleep 30")
	t.Cleanup(func() {
		for _, s := range open {
			s.Close()
		}
	})
	if len(open) != 10 || len(refused) != 290 {
		t.Fatalf("%d sessions opened and %d refused, want 10 and 290 (max_sessions 10)", len(open), len(refused))
	}
	for _, err := range refused {
		if !strings.Contains(err.Error(), "max_sessions") {
			t.Fatalf("refusal without its reason: %v", err)
		}
	}
	time.Sleep(time.Second) // let the sessions' processes settle
	after := g.threads(t)
	t.Logf("gateway threads: %d before, %d with 10 sessions open and 290 refused", before, after)
	if after > before+40 {
		t.Errorf("gateway threads went from %d to %d for one connection's sessions", before, after)
	}
	// The connection still serves: close one session, open another.
	open[0].Close()
	open = open[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.NewSession()
		if err == nil {
			out, err := s.Output("echo still here")
			s.Close()
			if err != nil || string(out) != "still here\n" {
				t.Fatalf("a session after closing one: %q %v", out, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after closing a session: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hostileShell is an image whose /bin/sh never opens the FIFOs a
// non-terminal session's streams go through: a user's image decides what
// /bin/sh is.
var hostileShell = "FROM " + baseImage + `
RUN printf '#!/bin/bash\nexec sleep 600\n' > /usr/local/bin/stuck && chmod 755 /usr/local/bin/stuck && ln -sf /usr/local/bin/stuck /bin/sh
`

// Sessions whose process never opens its end of the stream FIFOs hold no
// gateway OS thread (the old gateway blocked three in open(2) per session,
// for as long as the session lasted), and end when the client goes.
func TestStuckSessionsHoldNoThreads(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addUser(t, "stucky", 21002, 21002)
	const proj = "stuck"
	// The user's own Dockerfile, copied in before the first login builds it.
	df := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(df, []byte(hostileShell), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustSCP(t, u, "", df, remote(proj, "Dockerfile"))
	// A terminal session does not use the FIFOs: it builds the image and
	// keeps the container.
	warm := g.startSSH(t, u, proj, "-tt")
	warm.waitOutput(t, "$", timeoutLong)
	before := g.threads(t)

	var clients []*ssh.Client
	total := 0
	for range 5 {
		c := g.mustGoClient(t, u, proj)
		clients = append(clients, c)
		open, refused := openSessions(c, 10, "true")
		if len(refused) > 0 {
			t.Fatalf("sessions refused: %v", refused[0])
		}
		total += len(open)
	}
	time.Sleep(2 * time.Second) // every session waits for its process by now
	after := g.threads(t)
	t.Logf("gateway threads: %d before, %d with %d stuck sessions", before, after, total)
	if after > before+30 {
		t.Errorf("%d stuck sessions raised the gateway's threads from %d to %d", total, before, after)
	}
	for _, c := range clients {
		c.Close()
	}
	if r := g.ssh(t, u, "ds01", "container-list"); r.code != 0 {
		t.Errorf("the gateway after the stuck sessions: %s", r)
	}
}
