package gateway

import (
	"context"
	"io"
	"net"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Sessions is what the gateway needs from the session layer: a lease on a
// project's container, and file transfers. The gateway declares it so
// that its protocol handling can be tested in-process against a fake;
// NewSessions builds it from the session layer's parts.
type Sessions interface {
	// Attach launches or joins the project's container; notices for the
	// user (build progress, GPU queue) go to notice.
	Attach(ctx context.Context, u store.User, project string, want session.Want, notice io.Writer) (Lease, error)
	Transfers
}

// Transfers is what file transfers need; *session.Transfers implements it.
type Transfers interface {
	// FileMounts opens what a file transfer may reach (creating the
	// project's workspace on first use); the caller closes each Dir.
	FileMounts(ctx context.Context, u store.User, project string) ([]session.FileMount, error)
	RecordTransfer(ctx context.Context, u store.User, project, protocol string, st session.TransferStats, d time.Duration)
	RunTransfer(ctx context.Context, u store.User, project string, cmd session.TransferCommand, stdin io.Reader, stdout, stderr io.Writer) (runtime.ExitStatus, error)
}

var _ Transfers = (*session.Transfers)(nil)

// Lease is one holder's claim on a running container; *session.Lease
// implements it.
type Lease interface {
	Exec(ctx context.Context, spec runtime.ExecSpec) (runtime.Process, error)
	Dial(ctx context.Context, network, address string) (net.Conn, error)
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	// SocketDir is a directory for sockets the container's processes may
	// reach: as the host names it, and as the container does.
	SocketDir() (host, container string, ok bool)
	User() store.User
	Shell() string
	// Retired is closed when the container is retired underneath the
	// lease; RetiredWhy then says why.
	Retired() <-chan struct{}
	RetiredWhy() string
	// Touch records that the user typed into a terminal: activity for the
	// idle reclaim. Cheap (an atomic store); callers still rate-limit it.
	Touch()
	Release()
}

var _ Lease = (*session.Lease)(nil)

// NewSessions is Sessions from the session layer's parts: m's leases and
// t's transfers. Attach needs the adapter: Go has no covariant results,
// and the manager returns its concrete lease.
func NewSessions(m *session.Manager, t *session.Transfers) Sessions {
	return managerSessions{m: m, Transfers: t}
}

type managerSessions struct {
	m *session.Manager
	*session.Transfers
}

func (m managerSessions) Attach(ctx context.Context, u store.User, project string, want session.Want, notice io.Writer) (Lease, error) {
	l, err := m.m.Attach(ctx, u, project, want, notice)
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return l, nil
}
