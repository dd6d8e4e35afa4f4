package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// How a container ends: its grace timer expires after the last lease is
// released (expire), a user retires it (RetireContainer), or it died or
// was removed outside the gateway (ensureRunning, Watch). Each way goes
// through retireLocked.

// retireRetry is the wait before retrying a retire the engine refused.
const retireRetry = 30 * time.Second

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
	if m.reaper != nil && m.reaper.holdsWork(ctx, e) {
		// Detached: work the user started still runs. The reaper starts
		// the grace again when it ends (regrace).
		m.mu.Lock()
		if e.gen == gen {
			e.timer = nil
		}
		m.mu.Unlock()
		return
	}
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
	m.holders.used(key{e.user.UID, e.project})
	if m.images != nil {
		m.images.retired(e.user, e.project, e.imageID)
	}
	if len(e.gpus) > 0 {
		m.gpus.hold(ctx, e.user, e.project, id, e.gpus)
	}
	e.gpus = nil
	m.gpus.free(ctx, e.user, e.project, id, e.name)
	if m.reaper != nil {
		m.reaper.forget(ctx, id)
	}
	m.dirs.removeRun(e.name)
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

// regrace starts e's grace timer again: a detached container's work
// ended. It reports whether it did (nobody holds e and no timer runs).
func (m *Manager) regrace(e *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.refs != 0 || e.timer != nil || m.closed {
		return false
	}
	k, gen := key{e.user.UID, e.project}, e.gen
	e.timer = time.AfterFunc(m.cfg.RetireAfter, func() { m.expire(k, e, gen) })
	return true
}

// dropIfUnused forgets e once its container is gone and nobody holds it.
func (m *Manager) dropIfUnused(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{e.user.UID, e.project}
	if e.refs == 0 && e.containerID == "" && e.launch == nil && m.entries[k] == e {
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		delete(m.entries, k)
	}
}

// ErrNoContainer is returned when a project has no running container.
var ErrNoContainer = errors.New("no running container")

// RetireContainer retires the project's container now. Sessions on it
// get why as their last notice and end; the workspace stays.
func (m *Manager) RetireContainer(ctx context.Context, u store.User, project, why string) error {
	if err := ValidateProject(project, ""); err != nil {
		return err
	}
	k := key{u.UID, project}
	m.mu.Lock()
	e := m.entries[k]
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("%w for %s", ErrNoContainer, project)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.containerID == "" {
		return fmt.Errorf("%w for %s", ErrNoContainer, project)
	}
	id := e.containerID
	m.retireLocked(ctx, e, why)
	if e.containerID != "" {
		return fmt.Errorf("retire %s: the engine refused; try again", short(id))
	}
	m.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	if e.refs == 0 && m.entries[k] == e {
		delete(m.entries, k)
	}
	m.mu.Unlock()
	return nil
}
