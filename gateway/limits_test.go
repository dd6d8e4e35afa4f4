package gateway

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Session channels beyond max_sessions are refused with the reason, as
// OpenSSH's MaxSessions does; closing one makes room.
func TestMaxSessions(t *testing.T) {
	g := startGateway(t, Options{MaxSessions: 3}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))
	var open []*gossh.Session
	for range 3 {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d: %v", len(open)+1, err)
		}
		if err := s.Start("wait"); err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	for range 20 {
		_, err := c.NewSession()
		if err == nil || !strings.Contains(err.Error(), "resource shortage") || !strings.Contains(err.Error(), "max_sessions") {
			t.Fatalf("session beyond the cap: %v, want a refusal naming max_sessions", err)
		}
	}
	// Another connection has its own sessions.
	if r := run(t, g.mustDial("thesis", g.addUser("bob", 1002)), "echo hi", nil); r.stdout != "hi\n" {
		t.Errorf("another connection: %+v", r)
	}
	open[0].Close()
	eventually(t, "a closed session makes room", func() bool {
		s, err := c.NewSession()
		if err != nil {
			return false
		}
		s.Close()
		return true
	})
}

// Forwarding channels have their own, larger cap.
func TestMaxForwardChannels(t *testing.T) {
	fs := newFakeSessions()
	fs.dial = func(context.Context, string, string) (net.Conn, error) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close() })
		return b, nil
	}
	g := startGateway(t, Options{MaxSessions: 1, MaxForwardChannels: 4}, fs)
	c := g.mustDial("thesis", g.addUser("alice", 1001))
	for i := range 4 {
		nc, err := c.Dial("tcp", "127.0.0.1:8888")
		if err != nil {
			t.Fatalf("forward %d: %v", i+1, err)
		}
		t.Cleanup(func() { nc.Close() })
	}
	_, err := c.Dial("tcp", "127.0.0.1:8888")
	if err == nil || !strings.Contains(err.Error(), "max_forward_channels") {
		t.Fatalf("forward beyond the cap: %v", err)
	}
	// Forwards do not use up sessions.
	if r := run(t, c, "echo hi", nil); r.stdout != "hi\n" {
		t.Errorf("a session beside 4 forwards: %+v", r)
	}
}

// A panic while serving one channel or one request ends that channel or
// fails that request; the gateway, the connection and its other sessions
// go on.
func TestPanicsAreContained(t *testing.T) {
	expectPanics[t.Name()] = true
	fs := newFakeSessions()
	fs.attach = func(_ context.Context, project string) error {
		if project == "boom" {
			panic("fake: attach panics")
		}
		return nil
	}
	fs.listen = func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }
	g := startGateway(t, Options{}, fs)
	k := g.addUser("alice", 1001)
	c := g.mustDial("thesis", k)

	other, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Start("wait"); err != nil {
		t.Fatal(err)
	}

	r := run(t, c, "panic", nil)
	if r.code != 1 || !strings.Contains(r.stderr, "internal error") {
		t.Errorf("a session whose exec panics: %+v, want exit 1 and a line on stderr", r)
	}
	boom := g.mustDial("boom", k)
	if r := run(t, boom, "echo hi", nil); r.code != 1 || !strings.Contains(r.stderr, "internal error") {
		t.Errorf("a session whose attach panics: %+v", r)
	}
	if _, err := boom.Dial("tcp", "127.0.0.1:8888"); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("a forward whose attach panics: %v", err)
	}
	if _, err := boom.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("a remote forward whose attach panics succeeded")
	}
	// The same connection still serves requests and sessions.
	if ok, _, err := boom.SendRequest("keepalive@openssh.com", true, nil); err != nil || ok {
		t.Errorf("keepalive after a panicking request: %v %v", ok, err)
	}
	if r := run(t, c, "echo still here", nil); r.stdout != "still here\n" {
		t.Errorf("a session after the panics: %+v", r)
	}
	if r := run(t, g.mustDial("thesis", k), "echo new", nil); r.stdout != "new\n" {
		t.Errorf("a new connection after the panics: %+v", r)
	}
	if n := strings.Count(g.logs.String(), "msg=panic"); n < 4 {
		t.Errorf("%d panics logged, want each of the 4", n)
	}
	if !strings.Contains(g.logs.String(), "goroutine") {
		t.Error("panics are logged without their stack")
	}
	_ = time.Second
}
