package session

import (
	"context"
	"io"
	"testing"
	"time"
)

// remoteRuntime is a runtime whose containers run elsewhere (pods on
// other nodes): they do not mount the host's socket directory.
type remoteRuntime struct{ *memRuntime }

func (remoteRuntime) HostSocketDir() bool { return false }

// A lease offers the host socket directory only when the runtime mounts
// it; otherwise agent sockets are listened on through the runtime.
func TestSocketDirOnlyWhenMounted(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Minute)
	l, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, inside, ok := l.SocketDir(); !ok || inside != "/run/ds01" {
		t.Errorf("docker-like runtime: SocketDir = %q, %v", inside, ok)
	}
	m.rt = remoteRuntime{rt}
	if _, _, ok := l.SocketDir(); ok {
		t.Error("a runtime without the host directory offered it")
	}
	m.rt = rt
}
