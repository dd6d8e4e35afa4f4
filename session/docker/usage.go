package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/ds01/ds01-gateway/session/cgroup"
	"github.com/ds01/ds01-gateway/session/runtime"
)

var _ runtime.Sampler = (*Docker)(nil)

// Usage reads the container's CPU time and counts its user processes from
// its cgroup. The first call for a container asks the engine once for its
// init PID; every later one reads two kernel files and no engine API.
// A stopped or removed container is runtime.ErrNotRunning.
func (d *Docker) Usage(ctx context.Context, id string) (runtime.Usage, error) {
	r, err := d.cgroupReader(ctx, id)
	if err != nil {
		return runtime.Usage{}, err
	}
	s, err := r.Sample()
	if err != nil {
		return runtime.Usage{}, d.readerErr(id, err)
	}
	return runtime.Usage{CPU: s.CPU, UserProcs: s.UserProcs}, nil
}

// UserProcs counts the container's user processes: one read of its
// cgroup.procs.
func (d *Docker) UserProcs(ctx context.Context, id string) (int, error) {
	r, err := d.cgroupReader(ctx, id)
	if err != nil {
		return 0, err
	}
	pids, err := r.UserPIDs()
	if err != nil {
		return 0, d.readerErr(id, err)
	}
	return len(pids), nil
}

// TerminateUser sends SIGTERM to the container's user processes (never
// its init or keeper, so the container itself stays up for Retire) and
// waits up to grace for them to end. Processes still running then are an
// error that counts them; a container that stops meanwhile is not one.
func (d *Docker) TerminateUser(ctx context.Context, id string, grace time.Duration) error {
	r, err := d.cgroupReader(ctx, id)
	if errors.Is(err, runtime.ErrNotRunning) {
		return nil // nothing left to end
	}
	if err != nil {
		return err
	}
	left, err := r.Terminate(ctx, grace)
	if err != nil {
		return fmt.Errorf("terminate user processes of %s: %w", short(id), err)
	}
	if left > 0 {
		return fmt.Errorf("container %s: %d user processes still running %s after SIGTERM", short(id), left, grace)
	}
	return nil
}

// Forget drops the container's cached cgroup reader.
func (d *Docker) Forget(id string) { d.readers.Delete(id) }

// cgroupReader returns the container's cached reader, opening it on first
// use. Two first calls at once may both open one; either is right.
func (d *Docker) cgroupReader(ctx context.Context, id string) (*cgroup.Reader, error) {
	if r, ok := d.readers.Load(id); ok {
		return r.(*cgroup.Reader), nil
	}
	pid, err := d.initPID(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := cgroup.Open(cgroup.Host(), pid, id)
	if err != nil {
		return nil, d.readerErr(id, err)
	}
	actual, _ := d.readers.LoadOrStore(id, r)
	return actual.(*cgroup.Reader), nil
}

// readerErr maps a gone container to runtime.ErrNotRunning and forgets it,
// so a container of the same ID can never be read through a stale reader.
func (d *Docker) readerErr(id string, err error) error {
	if errors.Is(err, cgroup.ErrGone) {
		d.readers.Delete(id)
		return fmt.Errorf("container %s: %w", short(id), runtime.ErrNotRunning)
	}
	return fmt.Errorf("container %s: %w", short(id), err)
}

// initPID is the host PID of the running container's init process.
func (d *Docker) initPID(ctx context.Context, id string) (int, error) {
	info, err := d.cli.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return 0, fmt.Errorf("container %s: %w", short(id), runtime.ErrNotRunning)
	}
	if err != nil {
		return 0, fmt.Errorf("inspect container: %w", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid <= 0 {
		return 0, fmt.Errorf("container %s: %w", short(id), runtime.ErrNotRunning)
	}
	return info.State.Pid, nil
}
