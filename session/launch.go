package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// A launch (first login: maybe a build, maybe a wait in the GPU queue,
// then the container) is work that outlives whoever started it, as
// Nomad's image pulls are: it runs on its own context, and every
// connection that needs the container follows it with its own. One that
// gives up leaves alone; when the last one has left, the launch is
// cancelled (a build stops, the queue forgets it). Nothing holds the
// project's lock meanwhile, so VS Code's extra connections, a
// container-retire or a listing never wait behind it.

// launchOp is one launch under way.
type launchOp struct {
	want  Want
	done  chan struct{}
	err   error      // set before done closes
	notes *broadcast // what it tells its followers, from the start; counts them
}

// startLaunch starts a launch of e's container; e.mu is held.
func (m *Manager) startLaunch(e *entry, u store.User, want Want) *launchOp {
	ctx, cancel := context.WithCancelCause(context.Background())
	op := &launchOp{want: want, done: make(chan struct{}), notes: newBroadcast(cancel)}
	e.launch = op
	go func() {
		err := m.launch(ctx, e, u, want, op.notes)
		if err != nil && errors.Is(context.Cause(ctx), errNobodyWaits) {
			err = fmt.Errorf("launch cancelled: %w", errNobodyWaits)
		}
		cancel(nil)
		e.mu.Lock()
		e.launch = nil
		e.mu.Unlock()
		op.err = err
		op.notes.finish()
		close(op.done)
	}()
	return op
}

// follow copies the launch's notices to notice until it ends, and returns
// its error; or leaves when ctx is done, which cancels the launch if
// nobody else waits for it.
func (op *launchOp) follow(ctx context.Context, notice io.Writer) error {
	if err := op.notes.follow(ctx, notice); err != nil {
		return err
	}
	<-op.done // the notes finish just before done closes
	return op.err
}

// launch builds the image if needed, waits for GPUs and starts e's
// container.
func (m *Manager) launch(ctx context.Context, e *entry, u store.User, want Want, notice io.Writer) error {
	ws, imageID, err := m.images.ensureProject(ctx, u, e.project, notice)
	if err != nil {
		return err
	}
	defer ws.Close()
	limits, _ := m.limits.of(u)
	unreserve, err := m.reserveContainer(e, u, limits)
	if err != nil {
		return err
	}
	defer unreserve()
	slots, err := m.gpus.acquire(ctx, u, e.project, m.gpus.count(ctx, u, e.project, want), limits, notice)
	if err != nil {
		return err
	}
	err = m.startContainer(ctx, e, u, ws, imageID, slots, m.limits.container(limits), notice)
	if err != nil {
		// A rebuild that ended during the wait for GPUs may have removed
		// the image this launch looked up (image_prune.go): start from
		// the project's image of now.
		if cur, ierr := m.builder.ImageID(ctx, image.Ref(u.UID, e.project)); ierr == nil && cur != "" && cur != imageID {
			m.log.Info("launch: image replaced meanwhile, retrying", "user", u.Name, "project", e.project)
			err = m.startContainer(ctx, e, u, ws, cur, slots, m.limits.container(limits), notice)
		}
	}
	if err != nil {
		m.gpus.free(ctx, u, e.project)
		return err
	}
	if len(slots) > 0 {
		fmt.Fprint(notice, m.gpus.notice(u, slots, limits))
	}
	return nil
}

// startContainer starts a fresh container for e from imageID with the
// given slots, and publishes it on e.
func (m *Manager) startContainer(ctx context.Context, e *entry, u store.User, ws *workspace.Dir, imageID string, slots []gpu.Slot, limits runtime.Limits, notice io.Writer) error {
	start := time.Now()
	ref := image.Ref(u.UID, e.project)
	name := containerName(u.Name, e.project)
	home, err := m.dirs.userMounts(u)
	if err != nil {
		return fmt.Errorf("launch container: %w", err)
	}
	run, err := m.dirs.prepareRun(ctx, name, u, imageID)
	if err != nil {
		return fmt.Errorf("launch container: %w", err)
	}
	staged, unstage, err := m.dirs.stageWorkspace(name, ws)
	if err != nil {
		m.dirs.removeRun(name)
		return fmt.Errorf("launch container: %w", err)
	}
	// Once started, the container holds its own mount of the workspace.
	defer unstage()
	spec := runtime.ContainerSpec{
		Name:          name,
		Image:         imageID,
		Hostname:      e.project,
		Labels:        m.containerLabels(u, e.project, start, ""),
		User:          fmt.Sprintf("%d:%d", u.UID, u.GID),
		Env:           []string{"HOME=" + run.home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=" + run.shell},
		Workdir:       "/workspace",
		Mounts:        append(append([]runtime.Mount{{Source: staged, Target: "/workspace"}}, run.mounts...), home...),
		Network:       userNetwork(u),
		NetworkLabels: m.userNetworkLabels(u),
		Limits:        limits,
		IODir:         run.io,
	}
	m.gpus.spec(&spec, slots)
	// The slots are in the store before the container exists, under its
	// name: a crash between the two must not leave a container holding
	// GPUs the store does not know of (reconcile trusts only the store).
	m.gpus.record(ctx, u, e.project, name, slots, start)
	k := key{u.UID, e.project}
	spec.NetworkHolder = m.holders.join(ctx, k)
	id, err := m.rt.Launch(ctx, spec)
	if err != nil && spec.NetworkHolder != "" && ctx.Err() == nil && !m.holderRunning(ctx, spec.NetworkHolder) {
		// The holder died or an admin removed it: launch as without one,
		// once; a new holder follows. A launch that failed for another
		// reason (the image, the limits) keeps its error and the holder.
		m.holders.failed(k, spec.NetworkHolder, err)
		spec.NetworkHolder = ""
		id, err = m.rt.Launch(ctx, spec)
	}
	if err == nil && spec.NetworkHolder == "" {
		m.holders.ensure(u, e.project, m.busyKeys)
	}
	if err != nil {
		if len(slots) > 0 {
			if derr := m.store.DeleteAllocations(ctx, name); derr != nil {
				m.log.Error("record gpu release", "container", name, "err", derr)
			}
		}
		m.dirs.removeRun(name)
		m.event(ctx, store.Event{Type: "container.launch_failed", User: u.Name, Project: e.project, Duration: time.Since(start), Details: err.Error()})
		return fmt.Errorf("launch container: %w", err)
	}
	m.gpus.record(ctx, u, e.project, id, slots, start)
	e.mu.Lock()
	e.containerID, e.imageID, e.name, e.shell, e.launchedAt = id, imageID, name, run.shell, time.Now()
	e.workspace, e.gpus = ws.Path(), slots
	e.ret = newRetirement()
	e.publish()
	e.mu.Unlock()
	d := time.Since(start)
	if err := m.store.PutContainer(ctx, store.Container{ID: id, Name: spec.Name, User: u.Name, Project: e.project, Image: ref, State: "running", CreatedAt: start}); err != nil {
		m.log.Error("record container", "container", id, "err", err)
	}
	if len(slots) > 0 {
		m.event(ctx, store.Event{Type: "gpu.allocate", User: u.Name, Project: e.project, Container: id, Details: slotList(slots)})
	}
	m.event(ctx, store.Event{Type: "container.launch", User: u.Name, Project: e.project, Container: id, Duration: d})
	m.log.Info("container launched", "user", u.Name, "project", e.project, "container", short(id), "duration", d)
	fmt.Fprintf(notice, "ds01: container %s ready (%.1f s)\n", e.project, d.Seconds())
	return nil
}

// ctxMutex is a mutex that a caller can stop waiting for.
type ctxMutex chan struct{}

func newCtxMutex() ctxMutex { return make(ctxMutex, 1) }

func (c ctxMutex) Lock() { c <- struct{}{} }

func (c ctxMutex) Unlock() { <-c }

// TryLock takes the lock if it is free.
func (c ctxMutex) TryLock() bool {
	select {
	case c <- struct{}{}:
		return true
	default:
		return false
	}
}

// LockContext takes the lock, or gives up when ctx is done.
func (c ctxMutex) LockContext(ctx context.Context) error {
	select {
	case c <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
