package session

import (
	"context"
	"fmt"
	"net"

	"github.com/ds01/ds01-gateway/session/runtime"
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
