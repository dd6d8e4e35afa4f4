package session

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// A runtime that mounts no host directory into the container (kubernetes)
// gives leases no socket directory: agent forwarding then makes its socket
// inside the container instead of in a host directory the pod never sees.
func TestSocketDirFollowsRuntime(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Minute)
	l, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	host, inside, ok := l.SocketDir()
	if !ok || filepath.Base(host) != "io" || inside != "/run/ds01" {
		t.Fatalf("docker: SocketDir = %q %q %v, want the run directory's io, mounted at /run/ds01", host, inside, ok)
	}
	m.cfg.NoSocketDir = true
	if host, _, ok := l.SocketDir(); ok {
		t.Fatalf("NoSocketDir: SocketDir = %q, want none", host)
	}
}
