package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
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
func (m *Manager) follow(ctx context.Context, op *launchOp, notice io.Writer) error {
	if err := op.notes.follow(ctx, notice); err != nil {
		return err
	}
	<-op.done // the notes finish just before done closes
	return op.err
}

// launch builds the image if needed, waits for GPUs and starts e's
// container.
func (m *Manager) launch(ctx context.Context, e *entry, u store.User, want Want, notice io.Writer) error {
	ws, imageID, err := m.ensureProject(ctx, u, e.project, notice)
	if err != nil {
		return err
	}
	defer ws.Close()
	limits, _ := m.limitsFor(u)
	unreserve, err := m.reserveContainer(e, u, limits)
	if err != nil {
		return err
	}
	defer unreserve()
	slots, err := m.acquireGPUs(ctx, u, e.project, m.gpuCount(ctx, u, e.project, want), limits, notice)
	if err != nil {
		return err
	}
	if err := m.startContainer(ctx, e, u, ws, imageID, slots, m.containerLimits(limits), notice); err != nil {
		m.freeSlots(ctx, u, e.project)
		return err
	}
	if len(slots) > 0 {
		fmt.Fprint(notice, m.gpuNotice(u, slots, limits))
	}
	return nil
}

// startContainer starts a fresh container for e from imageID with the
// given slots, and publishes it on e.
func (m *Manager) startContainer(ctx context.Context, e *entry, u store.User, ws *workspace.Dir, imageID string, slots []gpu.Slot, limits runtime.Limits, notice io.Writer) error {
	start := time.Now()
	ref := image.Ref(u.UID, e.project)
	name := containerName(u.Name, e.project)
	home, err := m.userMounts(u)
	if err != nil {
		return fmt.Errorf("launch container: %w", err)
	}
	run, err := m.prepareRunDir(ctx, name, u, imageID)
	if err != nil {
		return fmt.Errorf("launch container: %w", err)
	}
	staged, unstage, err := m.stageWorkspace(name, ws)
	if err != nil {
		m.removeRunDir(name)
		return fmt.Errorf("launch container: %w", err)
	}
	// Once started, the container holds its own mount of the workspace.
	defer unstage()
	spec := runtime.ContainerSpec{
		Name:     name,
		Image:    imageID,
		Hostname: e.project,
		Labels:   m.containerLabels(u, e.project, start, ""),
		User:     fmt.Sprintf("%d:%d", u.UID, u.GID),
		Env:      []string{"HOME=" + run.home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=" + run.shell},
		Workdir:  "/workspace",
		Mounts:   append(append([]runtime.Mount{{Source: staged, Target: "/workspace"}}, run.mounts...), home...),
		Network:  userNetwork(u),
		NetworkLabels: map[string]string{
			LabelUser: u.Name, LabelUID: strconv.Itoa(u.UID), LabelInstance: m.cfg.Instance,
		},
		Limits: limits,
		IODir:  run.io,
	}
	m.gpuSpec(&spec, slots)
	// The slots are in the store before the container exists, under its
	// name: a crash between the two must not leave a container holding
	// GPUs the store does not know of (reconcile trusts only the store).
	m.recordGPUs(ctx, u, e.project, name, slots, start)
	id, err := m.rt.Launch(ctx, spec)
	if err != nil {
		if len(slots) > 0 {
			if derr := m.store.DeleteAllocations(ctx, name); derr != nil {
				m.log.Error("record gpu release", "container", name, "err", derr)
			}
		}
		m.removeRunDir(name)
		m.event(ctx, store.Event{Type: "container.launch_failed", User: u.Name, Project: e.project, Duration: time.Since(start), Details: err.Error()})
		return fmt.Errorf("launch container: %w", err)
	}
	m.recordGPUs(ctx, u, e.project, id, slots, start)
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

// containerLabels are the labels of a container the gateway creates. The
// engine merges the image's labels under them, and a user's image may
// carry any ds01.* label it likes: so every label the gateway ever reads
// back is set here, empty where it does not apply, and the image's value
// never shows through.
func (m *Manager) containerLabels(u store.User, project string, created time.Time, role string) map[string]string {
	return map[string]string{
		LabelUser:       u.Name,
		LabelUID:        strconv.Itoa(u.UID),
		LabelGID:        strconv.Itoa(u.GID),
		LabelProject:    project,
		LabelCreated:    created.UTC().Format(time.RFC3339),
		LabelInstance:   m.cfg.Instance,
		LabelRole:       role,
		LabelGPUUUIDs:   "",
		LabelGPUEq:      "",
		LabelGPUCount:   "0",
		LabelDockerfile: "",
	}
}

// reserveContainer counts e against the user's max_containers_per_user
// for the duration of its launch, or refuses it. Counting and reserving
// happen under one lock, so two logins at once cannot both take the last
// place.
func (m *Manager) reserveContainer(e *entry, u store.User, l gpu.Limits) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.capRefusal(u.UID, l, e, ""); err != nil {
		return nil, err
	}
	e.reserved = true
	return func() {
		m.mu.Lock()
		e.reserved = false
		m.mu.Unlock()
	}, nil
}

// capRefusal refuses one more container of the user's beyond
// max_containers_per_user, counting all but except's; what says what the
// new one would be for. m.mu is held.
func (m *Manager) capRefusal(uid int, l gpu.Limits, except *entry, what string) error {
	if l.MaxContainers == nil {
		return nil
	}
	if n := m.containersOf(uid, except); n >= *l.MaxContainers {
		return fmt.Errorf("%w: you run %d of %d containers (max_containers_per_user)%s: retire one first (container-list, container-retire)", ErrLimit, n, *l.MaxContainers, what)
	}
	return nil
}

// containersOf counts the user's containers, running or being launched,
// other than except's, with their running transfer containers; m.mu is
// held.
func (m *Manager) containersOf(uid int, except *entry) int {
	n := m.transfers[uid] // rsync's transfer containers count too
	for k, e := range m.entries {
		if k.uid == uid && e != except && (e.snap.Load() != nil || e.reserved) {
			n++
		}
	}
	return n
}

// stageWorkspace bind-mounts the opened workspace into the container's run
// directory and returns that path for the runtime to mount: a path only
// root can change, naming exactly the directory opened. unstage removes
// the staging mount (the container keeps its own).
func (m *Manager) stageWorkspace(name string, ws *workspace.Dir) (string, func(), error) {
	target := filepath.Join(m.cfg.RunDir, name, stagedWorkspace)
	if err := mkdirPrivate(target); err != nil {
		return "", nil, fmt.Errorf("stage workspace: %w", err)
	}
	if err := ws.BindTo(target); err != nil {
		return "", nil, errors.Join(err, workspace.Unbind(target))
	}
	return target, func() {
		if err := workspace.Unbind(target); err != nil {
			m.log.Warn("unstage workspace", "container", name, "err", err)
		}
	}, nil
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
