package gateway

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Shutdown tells an open session, waits for it up to its deadline, then
// closes it; nobody can connect meanwhile.
func TestShutdownTellsAndWaits(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	key := g.addUser("ann", 1000)
	c := g.mustDial("p", key)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuf
	s.Stderr = &stderr
	if err := s.Start("wait"); err != nil {
		t.Fatal(err)
	}
	g.nextProc()
	ended := make(chan error, 1)
	go func() { ended <- s.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()

	eventually(t, "the notice", func() bool { return strings.Contains(stderr.String(), "ds01: "+ShutdownNotice+"\n") })
	if _, err := g.dial("p", key); err == nil {
		t.Error("connected during the shutdown")
	}
	select {
	case <-ended:
		t.Fatal("session ended before the deadline")
	case <-time.After(200 * time.Millisecond):
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 3*time.Second {
		t.Errorf("Shutdown took %s, want about its 500ms deadline", d)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("session still open after Shutdown")
	}
	if n := strings.Count(stderr.String(), "ds01: "); n != 1 {
		t.Errorf("%d notices, want 1: %q", n, stderr.String())
	}
}

// Sessions that end on their own end the wait: Shutdown returns at once.
func TestShutdownReturnsWhenSessionsEnd(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	key := g.addUser("ann", 1000)
	c := g.mustDial("p", key)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuf
	s.Stderr = &stderr
	if err := s.Start("wait"); err != nil {
		t.Fatal(err)
	}
	p := g.nextProc()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.srv.Shutdown(ctx) }()
	eventually(t, "the notice", func() bool { return strings.Contains(stderr.String(), ShutdownNotice) })
	// The user logs out.
	p.Close()
	s.Wait()
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waiting after the last session ended")
	}
}
