package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// A signal's delivery asks the engine for the exec's PID, which can take a
// while; the channel's other requests are answered meanwhile.
func TestSignalDeliveryDoesNotStallRequests(t *testing.T) {
	fs := newFakeSessions()
	release := make(chan struct{})
	var once sync.Once
	fs.signal = func(syscall.Signal) { <-release }
	defer once.Do(func() { close(release) })
	g := startGateway(t, Options{}, fs)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start("wait"); err != nil {
		t.Fatal(err)
	}
	p := g.nextProc()
	if err := s.Signal(gossh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	replied := make(chan error, 1)
	go func() {
		_, err := s.SendRequest("window-change", true, gossh.Marshal(window{Cols: 80, Rows: 24}))
		replied <- err
	}()
	select {
	case err := <-replied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a request after a signal waits for the signal's delivery")
	}
	once.Do(func() { close(release) })
	select {
	case sig := <-p.got:
		if sig != syscall.SIGUSR1 {
			t.Errorf("delivered %v, want SIGUSR1", sig)
		}
	case <-time.After(5 * time.Second):
		t.Error("the signal was never delivered")
	}
}

// A remote forward that waits for its container (an image build, the GPU
// queue) does not hold up the connection: its channels keep working, the
// gateway's keepalives keep being answered, more global requests are taken
// in, and the replies come in the order of the requests.
func TestSlowRemoteForward(t *testing.T) {
	fs := newFakeSessions()
	building := make(chan struct{})
	var once sync.Once
	build := func() { once.Do(func() { close(building) }) }
	defer build()
	var first sync.Once
	fs.attach = func(ctx context.Context, project string) error {
		slow := false
		first.Do(func() { slow = true }) // the forward's
		if !slow {
			return nil
		}
		select {
		case <-building:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fs.listen = func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }
	g := startGateway(t, Options{KeepaliveInterval: 50 * time.Millisecond, KeepaliveCount: 10}, fs)
	k := g.addUser("alice", 1001)
	c := g.mustDial("thesis", k)

	forwarded := make(chan error, 1)
	go func() {
		ln, err := c.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			ln.Close()
		}
		forwarded <- err
	}()
	eventually(t, "the forward waits for its container", func() bool { return len(fs.calls()) == 1 })

	// More global requests than x/crypto queues (16) before it stops
	// reading the connection.
	for i := range 40 {
		if _, _, err := c.SendRequest(fmt.Sprintf("keepalive-%d@example.com", i), false, nil); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.NewSession()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer s.Close()
		out, err := s.Output("echo still here")
		done <- result{stdout: string(out), err: err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.stdout != "still here\n" {
			t.Fatalf("a session during a slow forward: %q, %v", r.stdout, r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the connection's channels stall while a remote forward waits")
	}
	// Many keepalive rounds: the gateway would have dropped a connection
	// whose replies it could not read.
	time.Sleep(1500 * time.Millisecond)
	select {
	case err := <-forwarded:
		t.Fatalf("the forward ended before its container was ready: %v", err)
	default:
	}
	build()
	select {
	case err := <-forwarded:
		if err != nil {
			t.Fatalf("the forward failed once the container was ready: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the forward never finished")
	}
	// The connection is alive and later requests get their replies.
	if ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil || ok {
		t.Errorf("keepalive after the forward: %v %v, want a refusal", ok, err)
	}
	if strings.Contains(g.logs.String(), "stopped answering keepalives") {
		t.Error("the gateway dropped the client for unanswered keepalives")
	}
}

// A client that piles up global requests behind a slow one loses its
// connection, rather than the gateway queueing them without bound.
func TestTooManyPendingGlobalRequests(t *testing.T) {
	fs := newFakeSessions()
	fs.attach = func(ctx context.Context, _ string) error {
		<-ctx.Done() // never ready
		return ctx.Err()
	}
	g := startGateway(t, Options{}, fs)
	c := g.mustDial("thesis", g.addUser("alice", 1001))
	go c.Listen("tcp", "127.0.0.1:0")
	eventually(t, "the forward waits", func() bool { return len(fs.calls()) == 1 })
	for i := range 2 * maxPendingGlobal {
		if _, _, err := c.SendRequest(fmt.Sprintf("flood-%d@example.com", i), false, nil); err != nil {
			break // closed
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection with too many pending global requests stays open")
	}
	if !strings.Contains(g.logs.String(), "too many global requests") {
		t.Error("the reason is not logged")
	}
	eventually(t, "the waiting forward gave up", func() bool { return fs.held() == 0 })
}
