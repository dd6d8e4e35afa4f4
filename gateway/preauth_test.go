package gateway

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func TestLogName(t *testing.T) {
	for in, want := range map[string]string{
		"thesis":                    "thesis",
		"thesis+gpus=2":             "thesis+gpus=2",
		"a\nlevel=ERROR msg=forged": `a\x0alevel=ERROR msg=forged`,
		"\x1b]0;pwned\x07":          `\x1b]0;pwned\x07`,
		"caf\xe9":                   `caf\xe9`,
		"über":                      "über",
		"x\u202ey":                  `x\u202ey`,
		strings.Repeat("x", 30000):  strings.Repeat("x", 64) + "...(30000 bytes)",
	} {
		if got := logName(in); got != want {
			t.Errorf("logName(%.20q) = %q, want %q", in, got, want)
		}
	}
}

func TestStartups(t *testing.T) {
	s := newStartups(3, 2)
	r1, _ := s.acquire("10.0.0.1")
	r2, _ := s.acquire("10.0.0.1")
	if r, why := s.acquire("10.0.0.1"); r != nil || !strings.Contains(why, "max_startups_per_source") {
		t.Fatalf("third from one source: %v", why)
	}
	r3, _ := s.acquire("10.0.0.2")
	if r, why := s.acquire("10.0.0.3"); r != nil || !strings.Contains(why, "max_startups") {
		t.Fatalf("fourth in all: %v", why)
	}
	r1()
	r1() // idempotent
	if r, _ := s.acquire("10.0.0.3"); r == nil {
		t.Fatal("a released slot is not free")
	}
	r2()
	r3()
	if r, _ := s.acquire("10.0.0.1"); r == nil {
		t.Fatal("a released source slot is not free")
	}
}

func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:2222":              "192.0.2.7",
		"[::ffff:192.0.2.7]:2222":     "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:2222": "2001:db8:1:2::/64",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

// Failure lines are limited per source and in all, per window; what is
// held back is counted and reported once per source at the window's end.
func TestFailureLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		summaries := map[string]int{}
		f := newFailureLog(3, 5, time.Minute, func(src string, n int) {
			mu.Lock()
			summaries[src] += n
			mu.Unlock()
		})
		logged := map[string]int{}
		for range 10 {
			for _, src := range []string{"a", "b"} {
				if f.allow(src) {
					logged[src]++
				}
			}
		}
		if logged["a"] != 3 || logged["b"] != 2 { // b hits the total of 5
			t.Errorf("logged %v, want a:3 b:2", logged)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		mu.Lock()
		if len(summaries) != 0 {
			t.Errorf("summaries before the window ended: %v", summaries)
		}
		mu.Unlock()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		mu.Lock()
		if summaries["a"] != 7 || summaries["b"] != 8 {
			t.Errorf("summaries %v, want a:7 b:8", summaries)
		}
		mu.Unlock()
		if !f.allow("a") {
			t.Error("a new window does not log again")
		}
		// Past maxFailureSources, new sources share one count.
		for i := range maxFailureSources + 10 {
			f.allow(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
		}
		f.mu.Lock()
		n := len(f.sources)
		f.mu.Unlock()
		if n > maxFailureSources+1 {
			t.Errorf("%d sources counted", n)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
	})
}

// Twenty unauthenticated connections with 30 KB login names, each trying
// six unknown keys, write a bounded log (the old gateway wrote 3.6 MB).
func TestPreauthLogBounded(t *testing.T) {
	var mu sync.Mutex
	summaries := 0
	var failures *failureLog
	g := startGateway(t, Options{MaxAuthTries: 6, MaxStartups: 20, MaxStartupsPerSource: 20}, nil, func(s *Server) {
		// A window longer than the test; it ends when the test says.
		failures = newFailureLog(failureLinesPerSource, failureLinesTotal, time.Hour, func(src string, n int) {
			mu.Lock()
			summaries += n
			mu.Unlock()
			s.log.Info("connection failures not logged", "source", src, "suppressed", n)
		})
		s.failures = failures
	})
	name := strings.Repeat("A", 30000) + "\nlevel=ERROR msg=forged"
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := []gossh.Signer{}
			for range 6 {
				keys = append(keys, newKey(t))
			}
			if c, err := g.dial(name, keys...); err == nil {
				c.Close()
				t.Error("unknown keys got in")
			}
		}()
	}
	wg.Wait()
	logs := g.logs.String()
	if n := len(logs); n > 16<<10 {
		t.Errorf("%d bytes of log for 20 failed connections", n)
	}
	if strings.Contains(logs, "\nlevel=ERROR msg=forged") {
		t.Error("a login name forged a log line")
	}
	if c := strings.Count(logs, "unknown key"); c == 0 || c > failureLinesPerSource {
		t.Errorf("%d unknown-key lines, want 1 to %d", c, failureLinesPerSource)
	}
	if c := strings.Count(logs, "\n"); c > failureLinesPerSource+1 {
		t.Errorf("%d log lines, want at most %d and a summary", c, failureLinesPerSource)
	}
	failures.flush() // the window ends
	if !strings.Contains(g.logs.String(), "connection failures not logged") {
		t.Error("no summary of what was not logged")
	}
	mu.Lock()
	defer mu.Unlock()
	if summaries < 100 {
		t.Errorf("%d failures counted as not logged, want the rest of 120", summaries)
	}
}

// Beyond max_startups_per_source unauthenticated connections, a new one
// from that source is closed at once, before the SSH handshake; connections
// that have authenticated do not count, and other sources get in.
func TestMaxStartups(t *testing.T) {
	g := startGateway(t, Options{MaxStartups: 4, MaxStartupsPerSource: 2}, nil)
	k := g.addUser("alice", 1001)
	// Authenticated connections from this source do not count.
	before := []*gossh.Client{g.mustDial("thesis", k), g.mustDial("thesis", k), g.mustDial("thesis", k)}

	idle := func(local string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", g.addr)
		if err != nil {
			t.Fatalf("connect from %s: %v", local, err)
		}
		t.Cleanup(func() { c.Close() })
		// Read the banner, so the gateway has counted the connection.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 8)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "SSH-2.0-" {
			t.Fatalf("connection from %s: %q %v, want an SSH banner", local, b, err)
		}
		return c
	}
	refused := func(local string) bool {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", g.addr)
		if err != nil {
			return true
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(make([]byte, 64))
		return n == 0 && err == io.EOF
	}
	a1 := idle("127.0.0.1")
	idle("127.0.0.1")
	if !refused("127.0.0.1") {
		t.Fatal("a third unauthenticated connection from one source was served")
	}
	if !strings.Contains(g.logs.String(), "max_startups_per_source") {
		t.Error("the refusal is not logged with its reason")
	}
	// Sessions on the authenticated connections go on.
	for _, c := range before {
		if r := run(t, c, "echo hi", nil); r.stdout != "hi\n" {
			t.Errorf("an authenticated connection: %+v", r)
		}
	}
	// Another source gets in, and authenticates.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", g.addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	sc, chans, reqs, err := gossh.NewClientConn(nc, g.addr, &gossh.ClientConfig{
		User: "thesis", Auth: []gossh.AuthMethod{gossh.PublicKeys(k)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatalf("login from another source: %v", err)
	}
	other := gossh.NewClient(sc, chans, reqs)
	defer other.Close()
	if r := run(t, other, "echo hi", nil); r.stdout != "hi\n" {
		t.Errorf("session from another source: %+v", r)
	}
	// The global cap: 2 + 2 more from a third source fill it.
	idle("127.0.0.3")
	idle("127.0.0.3")
	if !refused("127.0.0.4") {
		t.Error("a connection beyond max_startups was served")
	}
	// A slot comes back when its connection goes.
	a1.Close()
	eventually(t, "a freed slot", func() bool { return !refused("127.0.0.1") })
}
