package gateway

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// serveDial makes the fake containers answer every forwarded connection
// with msg.
func serveDial(fs *fakeSessions, msg string) {
	fs.dial = func(_ context.Context, _, _ string) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			a.Write([]byte(msg))
			a.Close()
		}()
		return b, nil
	}
}

func readConn(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestLocalForwards(t *testing.T) {
	fs := newFakeSessions()
	serveDial(fs, "from the container")
	g := startGateway(t, Options{ForwardAllow: []string{"db.internal:5432", "cache"}}, fs)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	for _, dest := range []string{"127.0.0.1:8888", "localhost:8888", "thesis:8888", "[::1]:8888", "db.internal:5432", "cache:6379"} {
		nc, err := c.Dial("tcp", dest)
		if err != nil {
			t.Errorf("forward to %s refused: %v", dest, err)
			continue
		}
		if got := readConn(t, nc); got != "from the container" {
			t.Errorf("forward to %s read %q", dest, got)
		}
	}
	fs.mu.Lock()
	dialed := slices.Clone(fs.dialed)
	fs.mu.Unlock()
	want := []string{"127.0.0.1:8888", "127.0.0.1:8888", "127.0.0.1:8888", "[::1]:8888", "db.internal:5432", "cache:6379"}
	if !slices.Equal(dialed, want) {
		t.Errorf("dialled %q in the container, want %q", dialed, want)
	}

	for _, dest := range []string{"10.0.0.1:80", "db.internal:22", "172.17.0.1:2375", "[2001:db8::1]:80", "127.0.0.1:0"} {
		_, err := c.Dial("tcp", dest)
		if err == nil || !strings.Contains(err.Error(), "administratively prohibited") {
			t.Errorf("forward to %s: %v, want it refused", dest, err)
		}
	}
	fs.mu.Lock()
	n := len(fs.dialed)
	fs.mu.Unlock()
	if n != len(want) {
		t.Errorf("refused forwards dialled %d times", n-len(want))
	}
	eventually(t, "forward leases released", func() bool { return fs.held() == 0 })
}

func TestRemoteForward(t *testing.T) {
	fs := newFakeSessions()
	var inside net.Listener
	fs.listen = func(network, addr string) (net.Listener, error) {
		if addr != "127.0.0.1:0" {
			t.Errorf("listen on %s in the container, want 127.0.0.1:0", addr)
		}
		ln, err := net.Listen(network, "127.0.0.1:0")
		inside = ln
		return ln, err
	}
	g := startGateway(t, Options{}, fs)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	ln, err := c.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatalf("ssh -R: %v", err)
	}
	defer ln.Close()
	if ln.Addr().(*net.TCPAddr).Port != inside.Addr().(*net.TCPAddr).Port {
		t.Errorf("the client was told port %v, the container listens on %v", ln.Addr(), inside.Addr())
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("from the laptop"))
			c.Close()
		}
	}()
	nc, err := net.Dial("tcp", inside.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := readConn(t, nc); got != "from the laptop" {
		t.Errorf("a connection in the container read %q", got)
	}
	// Cancelling closes the listener in the container and gives back the
	// lease.
	ln.Close()
	eventually(t, "the listener closed", func() bool {
		c, err := net.Dial("tcp", inside.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	eventually(t, "lease released", func() bool { return fs.held() == 0 })
}
