package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Labels put on everything the gateway creates; reconciliation finds its
// containers by them after a crash.
const (
	LabelUser     = "ds01.user"
	LabelUID      = "ds01.uid"
	LabelProject  = "ds01.project"
	LabelCreated  = "ds01.created-at"
	LabelInstance = "ds01.instance"
)

// Config is what the manager needs from the gateway's configuration.
type Config struct {
	// WorkspaceRoot holds every project's workspace: <root>/<project>. It
	// may contain {user} and {home}.
	WorkspaceRoot string
	BaseImage     string
	// RetireAfter is the grace between the last connection closing and the
	// container being retired.
	RetireAfter time.Duration
	Limits      runtime.Limits
	// Instance tells this gateway's containers from any other's.
	Instance string
	// RunDir holds each container's run directory (see rundir.go).
	RunDir string
	// UserDir holds what persists of users' homes (see userdir.go).
	UserDir string
	// AllowedBases are glob patterns for the images a project's
	// Dockerfile may start FROM; empty allows any.
	AllowedBases []string
	// BuildTimeout bounds one image build; zero means none.
	BuildTimeout time.Duration

	// Inventory and Alloc are the host's GPU slots and who holds them;
	// nil on a host without GPUs.
	Inventory gpu.Inventory
	Alloc     *gpu.Allocator
	// Policy is the users' limits (DS01's resource-limits.yaml).
	Policy *gpu.Policy
	// LimitsFromPolicy lets the policy's memory, CPU, shm and pids values
	// override Limits (set when the admin gave a limits file).
	LimitsFromPolicy bool
	// MaxNanoCPUs is the host's CPU count: no container may ask for more.
	MaxNanoCPUs int64
	// QueueTimeout bounds a wait for GPUs; zero means none.
	QueueTimeout time.Duration
	// TransferTimeout bounds one transfer container; zero means none.
	TransferTimeout time.Duration
}

// retireRetry is the wait before retrying a retire the engine refused.
const retireRetry = 30 * time.Second

// Manager hands out leases on project containers.
type Manager struct {
	cfg     Config
	rt      runtime.Runtime
	builder runtime.Builder
	store   *store.Store
	log     *slog.Logger

	// identities caches, per image ID, the image's passwd and group files.
	identities sync.Map

	mu      sync.Mutex
	entries map[key]*entry
	builds  map[key]*buildSlot
	closed  bool
	// transfers counts each uid's running transfer containers (transfer.go).
	transfers map[int]int
}

type key struct {
	uid     int
	project string
}

// entry is one (user, project) container slot.
//
// mu guards the container's fields and serialises retiring it. It is held
// only for short steps (a retire: stop and remove), never across a build
// or a wait for GPUs: those happen in a launch (launch.go) that every
// caller follows with its own context, so a connection can always give up.
type entry struct {
	mu          ctxMutex
	user        store.User
	project     string
	containerID string
	imageID     string
	gpus        []gpu.Slot
	name        string // the container's name, also its run directory's
	workspace   string
	shell       string
	launchedAt  time.Time
	// ret ends when the container goes; sessions on it tell their user
	// and end.
	ret *retirement
	// launch is the launch under way, nil when there is none.
	launch *launchOp
	// snap is what listings read without taking mu.
	snap atomic.Pointer[snapshot]

	// Guarded by Manager.mu.
	refs  int
	gen   uint64
	timer *time.Timer
	// reserved counts the entry against max_containers_per_user while
	// its launch runs, so two logins at once cannot both pass the cap.
	reserved bool
}

func newEntry(u store.User, project string) *entry {
	return &entry{mu: newCtxMutex(), user: u, project: project}
}

// New returns a manager. Call Reconcile once before serving.
func New(cfg Config, rt runtime.Runtime, b runtime.Builder, st *store.Store, log *slog.Logger) *Manager {
	return &Manager{cfg: cfg, rt: rt, builder: b, store: st, log: log, entries: map[key]*entry{}, builds: map[key]*buildSlot{}}
}

// snapshot is an entry's container as last published.
type snapshot struct {
	id, imageID, name string
	user              store.User
	launchedAt        time.Time
	gpus              []gpu.Slot
}

// publish records the entry's container for listings; e.mu is held.
func (e *entry) publish() {
	if e.containerID == "" {
		e.snap.Store(nil)
		return
	}
	e.snap.Store(&snapshot{id: e.containerID, imageID: e.imageID, name: e.name, user: e.user, launchedAt: e.launchedAt, gpus: e.gpus})
}

// Lease is one connection's hold on a running project container.
type Lease struct {
	m        *Manager
	e        *entry
	k        key
	user     store.User // as of Attach: Release must not read e's
	once     sync.Once
	attached time.Time
	ret      *retirement
}

// retirement is the end of one container: done closes when it is retired,
// after why is set.
type retirement struct {
	done chan struct{}
	why  string
}

func newRetirement() *retirement { return &retirement{done: make(chan struct{})} }

func (r *retirement) end(why string) {
	r.why = why
	close(r.done)
}

// Attach returns a lease on the user's project container, creating the
// project and launching the container if needed. Notices for the user
// (build output, queue position, "ready") are written to notice. A caller
// that gives up (ctx done) leaves at once; the launch goes on while anyone
// else waits for it.
func (m *Manager) Attach(ctx context.Context, u store.User, project string, want Want, notice io.Writer) (*Lease, error) {
	if err := ValidateProject(project, ""); err != nil {
		return nil, err
	}
	if err := checkUID(u); err != nil {
		return nil, err
	}
	k := key{u.UID, project}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errors.New("gateway is shutting down")
	}
	e := m.entries[k]
	if e == nil {
		e = newEntry(u, project)
		m.entries[k] = e
	}
	e.refs++
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	m.mu.Unlock()

	l := &Lease{m: m, e: e, k: k, user: u, attached: time.Now()}
	if err := m.ensureRunning(ctx, e, u, want, notice); err != nil {
		l.Release()
		return nil, err
	}
	if err := e.mu.LockContext(ctx); err != nil {
		l.Release()
		return nil, err
	}
	l.ret = e.ret
	id := e.containerID
	e.mu.Unlock()
	m.event(ctx, store.Event{Type: "container.attach", User: u.Name, Project: project, Container: id})
	return l, nil
}

func (e *entry) containerIDLocked() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.containerID
}

// ensureRunning makes sure e has a running container: it joins the one
// that runs, or follows the launch under way, or starts one.
func (m *Manager) ensureRunning(ctx context.Context, e *entry, u store.User, want Want, notice io.Writer) error {
	for {
		if err := e.mu.LockContext(ctx); err != nil {
			return err
		}
		e.user = u // the latest record: a key or group may have changed
		op, id, held := e.launch, e.containerID, len(e.gpus)
		if op == nil && id == "" {
			op = m.startLaunch(e, u, want)
		}
		e.mu.Unlock()
		if op != nil {
			if err := m.follow(ctx, op, notice); err != nil {
				return err
			}
			if op.want != want {
				m.mismatch(e, want, notice)
			}
			return nil
		}
		ok, err := m.rt.Running(ctx, id)
		if err != nil {
			return err
		}
		if ok {
			if want.GPUs >= 0 && want.GPUs != held {
				fmt.Fprintf(notice, "ds01: joined the running container of %s, which has %d GPU(s) (you asked for %d); to change: container-retire %s, then connect again\n",
					e.project, held, want.GPUs, e.project)
			}
			return nil
		}
		// It died on its own or an admin removed it: clean up, relaunch.
		if err := e.mu.LockContext(ctx); err != nil {
			return err
		}
		if e.containerID == id {
			m.log.Warn("container gone, relaunching", "user", u.Name, "project", e.project, "container", id)
			m.retireLocked(ctx, e, "died")
		}
		e.mu.Unlock()
	}
}

// mismatch tells a caller who followed someone else's launch that it got
// a different number of GPUs than it asked for.
func (m *Manager) mismatch(e *entry, want Want, notice io.Writer) {
	e.mu.Lock()
	held, running := len(e.gpus), e.containerID != ""
	e.mu.Unlock()
	if running && want.GPUs >= 0 && want.GPUs != held {
		fmt.Fprintf(notice, "ds01: joined the running container of %s, which has %d GPU(s) (you asked for %d); to change: container-retire %s, then connect again\n",
			e.project, held, want.GPUs, e.project)
	}
}

// Release ends the lease; the last one out starts the retire timer.
func (l *Lease) Release() {
	l.once.Do(func() {
		m, e := l.m, l.e
		m.mu.Lock()
		e.refs--
		if e.refs == 0 && !m.closed {
			gen := e.gen
			e.timer = time.AfterFunc(m.cfg.RetireAfter, func() { m.expire(l.k, e, gen) })
		}
		m.mu.Unlock()
		if sn := e.snap.Load(); sn != nil {
			m.event(context.Background(), store.Event{Type: "container.detach", User: l.user.Name, Project: e.project, Container: sn.id, Duration: time.Since(l.attached)})
		}
	})
}

// expire retires e's container if nobody attached since the timer was set.
func (m *Manager) expire(k key, e *entry, gen uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.mu.Lock()
	idle := e.refs == 0 && e.gen == gen
	m.mu.Unlock()
	if !idle {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.retireLocked(ctx, e, "grace expired")
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case e.refs != 0 || e.gen != gen || m.closed:
	case e.launch != nil:
		// Everyone left during a launch, which may still finish: look
		// again after the grace rather than forget the entry with its
		// container.
		e.timer = time.AfterFunc(max(m.cfg.RetireAfter, time.Second), func() { m.expire(k, e, gen) })
	case e.containerID != "":
		// The engine refused to remove it: try again rather than leak it.
		e.timer = time.AfterFunc(retireRetry, func() { m.expire(k, e, gen) })
	case m.entries[k] == e:
		delete(m.entries, k)
	}
}

// retireLocked stops and removes e's container; e.mu is held. The
// workspace is a bind mount and is never touched.
func (m *Manager) retireLocked(ctx context.Context, e *entry, why string) {
	id := e.containerID
	if id == "" {
		return
	}
	start := time.Now()
	// Sessions hear of it before their processes die, so they can say why.
	if e.ret != nil {
		e.ret.end(why)
		e.ret = nil
	}
	if err := m.rt.Retire(ctx, id); err != nil {
		m.log.Error("retire container", "container", short(id), "err", err)
		return // keep the ID: reconciliation will try again
	}
	e.containerID = ""
	e.publish()
	m.releaseGPUs(ctx, e, id)
	m.removeRunDir(e.name)
	if err := m.store.RetireContainer(ctx, id, time.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Error("record retire", "container", short(id), "err", err)
	}
	var lifetime time.Duration
	if !e.launchedAt.IsZero() {
		lifetime = time.Since(e.launchedAt)
	}
	m.event(ctx, store.Event{Type: "container.retire", User: e.user.Name, Project: e.project, Container: id, Duration: lifetime, Details: why})
	m.log.Info("container retired", "user", e.user.Name, "project", e.project, "container", short(id), "why", why, "took", time.Since(start))
}

// Close stops the retire timers. Containers stay up: connections are gone
// with the process, and the next start adopts them and retires them after
// the grace unless their users come back.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, e := range m.entries {
		if e.timer != nil {
			e.timer.Stop()
		}
	}
}

func (m *Manager) event(ctx context.Context, ev store.Event) {
	if err := m.store.AddEvent(context.WithoutCancel(ctx), ev); err != nil {
		m.log.Error("record event", "type", ev.Type, "err", err)
	}
}

// userNetwork is the per-user bridge network: a user's containers can reach
// each other, never another user's.
func userNetwork(u store.User) string { return fmt.Sprintf("ds01-u%d", u.UID) }

func containerName(user, project string) string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("ds01-%s.%s-%s", user, project, hex.EncodeToString(b[:]))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
