package session

import (
	"context"
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
	// BuildCacheMax is the engine's build cache in bytes beyond which it
	// is pruned after each build and at start; zero turns pruning off.
	BuildCacheMax int64

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
	// Lifecycle is when detached and idle containers go (reaper.go); a
	// nil Sampler turns it off: containers retire at the grace.
	Lifecycle LifecycleConfig
	// NoSocketDir is set for a runtime that does not mount
	// ContainerSpec.IODir from this host (kubernetes: the pod may run on
	// another node): leases then have no SocketDir, and agent sockets
	// are made inside the container instead.
	NoSocketDir bool
	// NetworkLinger is how long a project's network holder outlives its
	// last use (holders.go); zero turns holders off. NetworkHoldersMax
	// caps their number.
	NetworkLinger     time.Duration
	NetworkHoldersMax int
}

// Manager holds the life of project containers: one slot per (user,
// project), the leases on it, its launch, its grace timer and its retire.
// The other concerns of the session layer are parts of their own, which
// the Manager uses and hands out: Images (builds), Catalog (listings),
// GPUs (the GPU queue and limits), Transfers (file transfers),
// Workspaces and dirs (run and user directories); reconcile.go adopts
// what survived a restart.
type Manager struct {
	*deps
	limits     userLimits
	dirs       *dirs
	workspaces *Workspaces
	catalog    *Catalog
	images     *Images
	gpus       *GPUs
	transfers  *Transfers
	reaper     *Reaper // nil when the lifecycle is off
	holders    *netHolders

	mu      sync.Mutex
	entries map[key]*entry
	closed  bool
	// transferring counts each uid's running transfer containers against
	// max_containers_per_user (see reserveTransfer).
	transferring map[int]int
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

	// What the lifecycle needs to know of the sessions (notices.go).
	activity
}

func newEntry(u store.User, project string) *entry {
	return &entry{mu: newCtxMutex(), user: u, project: project}
}

// New returns a manager and its parts. Call Reconcile once before serving.
func New(cfg Config, rt runtime.Runtime, b runtime.Builder, st *store.Store, log *slog.Logger) *Manager {
	d := &deps{cfg: &cfg, rt: rt, builder: b, store: st, log: log, live: &reloadable{}}
	lim := userLimits{cfg: d.cfg, live: d.live}
	m := &Manager{deps: d, limits: lim, entries: map[key]*entry{}}
	m.dirs = &dirs{deps: d}
	m.holders = newNetHolders(d)
	m.workspaces = &Workspaces{deps: d}
	m.catalog = &Catalog{deps: d, containers: m, workspaces: m.workspaces}
	m.images = &Images{deps: d, limits: lim, containers: m, workspaces: m.workspaces, catalog: m.catalog, builds: map[key]*buildSlot{}}
	m.catalog.images = m.images
	m.gpus = &GPUs{deps: d, limits: lim, containers: m, catalog: m.catalog}
	m.gpus.recordHoldDrops()
	m.transfers = &Transfers{deps: d, limits: lim, containers: m, workspaces: m.workspaces, dirs: m.dirs}
	if cfg.Lifecycle.Sampler != nil {
		m.reaper = newReaper(m, log)
	}
	return m
}

// Images builds and retires the projects' images.
func (m *Manager) Images() *Images { return m.images }

// Catalog lists the users' projects and containers.
func (m *Manager) Catalog() *Catalog { return m.catalog }

// GPUs reports the GPU queue and the users' limits.
func (m *Manager) GPUs() *GPUs { return m.gpus }

// Transfers runs and records file transfers.
func (m *Manager) Transfers() *Transfers { return m.transfers }

// Reaper runs the containers' lifecycle; nil when it is off.
func (m *Manager) Reaper() *Reaper { return m.reaper }

// Workspaces opens the projects' workspaces.
func (m *Manager) Workspaces() *Workspaces { return m.workspaces }

// snapshot is an entry's container as last published.
type snapshot struct {
	id, imageID, name string
	project           string
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
	e.snap.Store(&snapshot{id: e.containerID, imageID: e.imageID, name: e.name, project: e.project, user: e.user, launchedAt: e.launchedAt, gpus: e.gpus})
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
	// launched: this Attach waited for a launch of the container (see
	// Launched).
	launched bool
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
	e := m.hold(k, u)
	if e == nil {
		return nil, errors.New("gateway is shutting down")
	}

	l := &Lease{m: m, e: e, k: k, user: u, attached: time.Now()}
	launched, err := m.ensureRunning(ctx, e, u, want, notice)
	if err != nil {
		l.Release()
		return nil, err
	}
	l.launched = launched
	if err := e.mu.LockContext(ctx); err != nil {
		l.Release()
		return nil, err
	}
	l.ret = e.ret
	id := e.containerID
	e.mu.Unlock()
	m.event(ctx, store.Event{Type: "container.attach", User: u.Name, Project: project, Container: id})
	if m.reaper != nil {
		m.reaper.attach(ctx, e, l, notice)
	} else {
		e.watch(l, notice) // for announcements (announce.go)
	}
	return l, nil
}

func (e *entry) containerIDLocked() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.containerID
}

// ensureRunning makes sure e has a running container: it joins the one
// that runs, or follows the launch under way, or starts one. launched
// says it waited for a launch (its own or another caller's).
func (m *Manager) ensureRunning(ctx context.Context, e *entry, u store.User, want Want, notice io.Writer) (launched bool, _ error) {
	for {
		if err := e.mu.LockContext(ctx); err != nil {
			return false, err
		}
		e.user = u // the latest record: a key or group may have changed
		op, id, held := e.launch, e.containerID, len(e.gpus)
		if op == nil && id == "" {
			op = m.startLaunch(e, u, want)
		}
		e.mu.Unlock()
		if op != nil {
			if err := op.follow(ctx, notice); err != nil {
				return true, err
			}
			if op.want != want {
				m.mismatch(e, want, notice)
			}
			return true, nil
		}
		ok, err := m.rt.Running(ctx, id)
		if err != nil {
			return false, err
		}
		if ok {
			if want.GPUs >= 0 && want.GPUs != held {
				fmt.Fprintf(notice, "ds01: joined the running container of %s, which has %d GPU(s) (you asked for %d); to change: container-retire %s, then connect again\n",
					e.project, held, want.GPUs, e.project)
			}
			return false, nil
		}
		// It died on its own or an admin removed it: clean up, relaunch.
		if err := e.mu.LockContext(ctx); err != nil {
			return false, err
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
		e.unwatch(l)
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

// hold counts one more holder of k's entry (a lease, an early hold),
// making the entry if needed and stopping a pending retire; nil once the
// manager has closed. Counted before anything looks at the launch, so a
// grace timer never retires what the holder is about to use.
func (m *Manager) hold(k key, u store.User) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	e := m.entries[k]
	if e == nil {
		e = newEntry(u, k.project)
		m.entries[k] = e
	}
	e.refs++
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	return e
}
