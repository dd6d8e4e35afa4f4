package session

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Exec starts a process in the lease's container as the lease's user, in
// /workspace unless spec says otherwise.
func (l *Lease) Exec(ctx context.Context, spec runtime.ExecSpec) (runtime.Process, error) {
	l.e.mu.Lock()
	id, u := l.e.containerID, l.e.user
	l.e.mu.Unlock()
	if id == "" {
		return nil, runtime.ErrNotRunning
	}
	spec.User = fmt.Sprintf("%d:%d", u.UID, u.GID)
	if spec.Dir == "" {
		spec.Dir = "/workspace"
	}
	return l.m.rt.Exec(ctx, id, spec)
}

// Dial connects to address inside the lease's container network namespace.
func (l *Lease) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	id := l.ContainerID()
	if id == "" {
		return nil, runtime.ErrNotRunning
	}
	return l.m.rt.Dial(ctx, id, network, address)
}

// Listen listens on address inside the lease's container network namespace.
func (l *Lease) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	id := l.ContainerID()
	if id == "" {
		return nil, runtime.ErrNotRunning
	}
	return l.m.rt.Listen(ctx, id, network, address)
}

// SocketDir is a directory for sockets the user's processes in the
// container may connect to, as the host and the container name it. It is
// mounted read-only into this container alone. There is none when the
// runtime does not mount it (Config.NoSocketDir).
func (l *Lease) SocketDir() (host, container string, ok bool) {
	if l.m.cfg.NoSocketDir {
		return "", "", false
	}
	l.e.mu.Lock()
	name := l.e.name
	l.e.mu.Unlock()
	if name == "" {
		return "", "", false
	}
	return filepath.Join(l.m.cfg.RunDir, name, "io"), runtime.IOMountPoint, true
}

// User is the lease's user.
func (l *Lease) User() store.User {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	return l.e.user
}

// Shell is the user's login shell inside the container.
func (l *Lease) Shell() string {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	if l.e.shell == "" {
		return "/bin/sh"
	}
	return l.e.shell
}

// ContainerID is the container the lease holds.
func (l *Lease) ContainerID() string { return l.e.containerIDLocked() }

// Retired is closed when the lease's container is retired underneath it:
// by container-retire, or because it died.
func (l *Lease) Retired() <-chan struct{} {
	if l.ret == nil {
		return nil
	}
	return l.ret.done
}

// RetiredWhy says why, once Retired is closed.
func (l *Lease) RetiredWhy() string {
	select {
	case <-l.Retired():
		return l.ret.why
	default:
		return ""
	}
}

// Launched says whether this Attach waited for the container to be
// launched (a build, the GPU queue, creating and starting it), its own
// launch or another connection's, rather than joining one that ran: the
// metrics' "cold" login.
func (l *Lease) Launched() bool { return l.launched }
