package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// The lifecycle of a container once it runs: package lifecycle decides
// (pure policy), the runtime's sampler measures (cgroup files, not the
// engine's stats API) and the reaper here asks the one with what the other
// measured and obeys: it tells the user, records, and stops. It is a part
// of its own, not Manager methods: the Manager only asks it whether a
// container still holds work when the grace runs out, and tells it when a
// container goes.

// LifecycleConfig is what the reaper needs from the configuration.
type LifecycleConfig struct {
	// Rules are the block's defaults; a user's limits override them.
	Rules lifecycle.Rules
	// CheckInterval is one sampling sweep of every container.
	CheckInterval time.Duration
	// SigtermGrace is how long the user's processes get between SIGTERM
	// and the container's stop.
	SigtermGrace time.Duration
	// PressureThreshold is the share of GPU-equivalents allocated that
	// means pressure (anyone waiting does too).
	PressureThreshold float64
	// ExemptionsFile is DS01's lifecycle-exemptions.yaml; "" for none. It is
	// read again when it changes.
	ExemptionsFile string
	// KeepHint is how a user runs container-keep for a project, for
	// notices.
	KeepHint func(project string) string
	// Sampler reads the containers' CPU use and processes.
	Sampler runtime.Sampler
}

// Reaper runs the lifecycle of every container of one Manager.
type Reaper struct {
	m       *Manager
	cfg     LifecycleConfig
	sampler runtime.Sampler
	log     *slog.Logger

	exempt exemptionsFile

	mu       sync.Mutex
	tracked  map[string]*tracked // by container ID
	pressure bool

	// kick wakes Run when a container becomes detached, so that Run need
	// not wake often while none is.
	kick chan struct{}
	// wakes counts Run's wake-ups (tests: an idle reaper must not wake).
	wakes atomic.Int64
}

// tracked is the reaper's view of one container.
type tracked struct {
	st    lifecycle.State
	saved persisted // as last written to the store
	dec   lifecycle.Decision
	gpu   bool // it holds GPUs: its idle deadline bounds the GPU queue
	// exempt is the user's exemption as of the last sweep.
	exempt lifecycle.Exemption
	// detached is set when the grace ran out while user processes ran.
	detached bool
	stopping bool
	ws       *workspace.Dir // the workspace, opened once for keep-alive and alerts
}

func newReaper(m *Manager, log *slog.Logger) *Reaper {
	cfg := m.cfg.Lifecycle
	r := &Reaper{m: m, cfg: cfg, sampler: cfg.Sampler, log: log, tracked: map[string]*tracked{}, kick: make(chan struct{}, 1), exempt: exemptionsFile{path: cfg.ExemptionsFile}}
	if m.cfg.Alloc != nil {
		m.cfg.Alloc.SetQueueBound(r.queueBound)
	}
	return r
}

// Run sweeps every CheckInterval until ctx ends. Detached containers are
// looked at more often, as their retire must follow the end of their work
// within the grace; counting their processes is one read of cgroup.procs.
// While none is detached Run sleeps until the next full sweep: an idle
// gateway's reaper wakes once a check interval, whatever it holds.
func (r *Reaper) Run(ctx context.Context) {
	if r.cfg.CheckInterval <= 0 {
		return
	}
	fast := min(r.cfg.CheckInterval, max(r.m.cfg.RetireAfter/2, 500*time.Millisecond))
	next := time.Now().Add(r.cfg.CheckInterval)
	t := time.NewTimer(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			// A container became detached: its first look is due within fast.
		case now := <-t.C:
			if !now.Before(next) {
				next = now.Add(r.cfg.CheckInterval)
				r.sweep(ctx, now)
			} else {
				r.sweepDetached(ctx)
			}
		}
		r.wakes.Add(1)
		wait := time.Until(next)
		if r.anyDetached() {
			wait = min(wait, fast)
		}
		t.Reset(max(wait, 0))
	}
}

// anyDetached reports whether a container is detached and not stopping:
// whether Run must look between its full sweeps.
func (r *Reaper) anyDetached() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tracked {
		if t.detached && !t.stopping {
			return true
		}
	}
	return false
}

// live is one container the sweep looks at.
type live struct {
	e  *entry
	sn *snapshot
}

func (r *Reaper) containers() []live {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]live, 0, len(m.entries))
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil {
			out = append(out, live{e, sn})
		}
	}
	return out
}

func (r *Reaper) sweep(ctx context.Context, now time.Time) {
	pressure := r.checkPressure(ctx)
	ex := r.exempt.load(r.log)
	for _, c := range r.containers() {
		r.check(ctx, c, now, pressure, ex)
	}
}

// check samples one container, asks the policy and obeys.
func (r *Reaper) check(ctx context.Context, c live, now time.Time, pressure bool, ex *lifecycle.Exemptions) {
	u, err := r.sampler.Usage(ctx, c.sn.id)
	if err != nil {
		// Gone or going: the watch and the retire paths deal with it.
		r.log.Debug("lifecycle: sample", "container", short(c.sn.id), "err", err)
		return
	}
	t := r.track(ctx, c)
	refs := r.m.refsOf(c.e)
	// File and NVML reads happen before the lock, which listings share.
	s := lifecycle.Sample{
		At:             now,
		CPU:            u.CPU,
		GPUUtil:        r.utilisation(c.sn.gpus),
		LastInput:      c.e.inputAt.Load(),
		SessionStarted: c.e.sessionAt.Load(),
		KeepAlive:      t.keepAlive(),
	}
	r.mu.Lock()
	if t.stopping {
		r.mu.Unlock()
		return
	}
	in := r.input(c, t, refs, pressure, ex, now)
	d := lifecycle.Decide(in, t.st, s, now)
	t.st, t.dec, t.exempt = d.State, d, in.Exempt
	stop := d.Stop != nil
	if stop {
		t.stopping = true
	}
	r.mu.Unlock()

	for _, n := range d.Notices {
		r.notify(ctx, c, n.Text)
	}
	for _, ev := range d.Events {
		r.m.event(ctx, store.Event{Type: ev.Type, User: c.sn.user.Name, Project: c.e.project, Container: c.sn.id, Duration: ev.Duration, Details: ev.Details})
	}
	r.persist(ctx, c.sn.id, t)
	if stop {
		go r.stop(context.WithoutCancel(ctx), c, d.Stop)
		return
	}
	if u.UserProcs == 0 {
		r.workEnded(c, t)
	}
}

// input is what the policy needs to know besides the sample. r.mu is held.
func (r *Reaper) input(c live, t *tracked, refs int, pressure bool, ex *lifecycle.Exemptions, now time.Time) lifecycle.Input {
	l, _ := r.m.limits.of(c.sn.user)
	in := lifecycle.Input{
		Rules:    lifecycle.RulesFrom(r.m.lifecycleRules(), l),
		HasGPU:   len(c.sn.gpus) > 0,
		Attached: refs,
		Detached: t.detached,
		Pressure: pressure && len(c.sn.gpus) > 0,
		Project:  c.e.project,
	}
	if ex != nil {
		in.Exempt = ex.For(c.sn.user.Name, now)
	}
	if r.cfg.KeepHint != nil {
		in.KeepHint = r.cfg.KeepHint(c.e.project)
	}
	return in
}

// utilisation is each slot's GPU utilisation; unknown reads as busy, so
// a GPU the gateway cannot read is never taken from anyone for idleness.
func (r *Reaper) utilisation(slots []gpu.Slot) []int {
	if len(slots) == 0 || r.m.cfg.Inventory == nil {
		return nil
	}
	out := make([]int, len(slots))
	for i, s := range slots {
		pct, ok := r.m.cfg.Inventory.Utilization(s.UUID)
		if !ok {
			pct = 100
		}
		out[i] = pct
	}
	return out
}

// track returns the reaper's record of c's container, loading it from the
// store after a restart, or starting one.
func (r *Reaper) track(ctx context.Context, c live) *tracked {
	r.mu.Lock()
	t := r.tracked[c.sn.id]
	r.mu.Unlock()
	if t != nil {
		return t
	}
	t = &tracked{gpu: len(c.sn.gpus) > 0}
	if b, err := r.m.store.Lifecycle(ctx, c.sn.id); err == nil {
		var p persisted
		if err := json.Unmarshal(b, &p); err != nil {
			r.log.Warn("lifecycle: stored state unreadable; starting afresh", "container", short(c.sn.id), "err", err)
		}
		t.st, t.detached = p.State, p.Detached
	} else if !errors.Is(err, store.ErrNotFound) {
		r.log.Error("lifecycle: load state", "container", short(c.sn.id), "err", err)
	}
	if t.st.Started.IsZero() {
		t.st.Started = c.sn.launchedAt
		t.st.LastActive = time.Now()
	}
	t.saved = persisted{t.st, t.detached}
	if ws, err := r.m.workspaces.open(ctx, c.sn.user, c.e.project, false); err == nil {
		t.ws = ws
	} else {
		r.log.Warn("lifecycle: workspace", "container", short(c.sn.id), "err", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.tracked[c.sn.id]; old != nil {
		t.close()
		return old
	}
	r.tracked[c.sn.id] = t
	return t
}

// close closes the workspace. ws itself is never reset: a sweep may still
// be reading it, and a closed Dir only fails.
func (t *tracked) close() {
	if t.ws != nil {
		t.ws.Close()
	}
}

// keepAlive is the modification time of /workspace/.keep-alive.
func (t *tracked) keepAlive() time.Time {
	if t.ws == nil {
		return time.Time{}
	}
	mt, _ := t.ws.ModTime(".keep-alive")
	return mt
}

// persist writes the state when it changed in a way that matters after a
// restart; activity alone is written at most once a minute.
func (r *Reaper) persist(ctx context.Context, id string, t *tracked) {
	r.mu.Lock()
	p := persisted{t.st, t.detached}
	changed := p.differs(t.saved)
	if changed {
		t.saved = p
	}
	r.mu.Unlock()
	if !changed {
		return
	}
	b, err := json.Marshal(p)
	if err == nil {
		err = r.m.store.SaveLifecycle(ctx, id, b)
	}
	if err != nil {
		r.log.Error("lifecycle: save state", "container", short(id), "err", err)
	}
}

// forget drops what the reaper knows of a retired container.
func (r *Reaper) forget(ctx context.Context, id string) {
	r.mu.Lock()
	t := r.tracked[id]
	delete(r.tracked, id)
	r.mu.Unlock()
	if t != nil {
		t.close()
	}
	r.sampler.Forget(id)
	if err := r.m.store.DeleteLifecycle(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		r.log.Debug("lifecycle: delete state", "container", short(id), "err", err)
	}
}

// persisted is what the store keeps of a container's lifecycle, so a
// restart (or kill -9) keeps its deadlines, warnings and keep leases.
type persisted struct {
	State    lifecycle.State `json:"state"`
	Detached bool            `json:"detached,omitempty"`
}

// differs reports whether p must be written over q: anything but the
// sampling baseline, and activity only once a minute (a restart that
// loses less than that only makes a container look busier).
func (p persisted) differs(q persisted) bool {
	a, b := p.State, q.State
	if a.LastActive.Sub(b.LastActive) >= time.Minute || p.Detached != q.Detached {
		return true
	}
	a.LastActive, b.LastActive = time.Time{}, time.Time{}
	a.LastCPU, b.LastCPU = 0, 0
	a.LastSampleAt, b.LastSampleAt = time.Time{}, time.Time{}
	return !reflect.DeepEqual(a, b)
}
