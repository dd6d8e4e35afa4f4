package session

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// A login's container can start while the SSH client is still busy after
// authentication (the session channel, its requests: several round trips
// on a real network). The gateway asks for that with Prepare only once
// the key's signature has been verified, for a project login.
//
// What is done early is what costs nobody anything scarce and changes
// nothing about who waits: looking up the project and its image, making
// the user's network, and, for a login that needs no GPUs, launching the
// container. A new project, a missing image (a build) and GPUs (the queue)
// wait for a session that asks, as before: a file transfer never builds
// or queues. The launch is held like a lease (an EarlyHold) until the
// connection's first session takes it over (Handover) or the connection
// turns out not to need it (Abandon).

// networkEnsurer makes a user's network ahead of a launch; the Docker
// runtime implements it. Without it the launch makes the network.
type networkEnsurer interface {
	EnsureNetwork(ctx context.Context, name string, labels map[string]string) error
}

// EarlyHold is one connection's early claim on its project's container.
// Exactly one of Handover and Abandon should be called; later calls do
// nothing.
type EarlyHold struct {
	m      *Manager
	cancel context.CancelFunc
	done   chan struct{} // closes when prepare has returned
	once   sync.Once

	// Set by prepare before done closes.
	e  *entry
	k  key
	op *launchOp // the launch this hold started, if it did
}

// Prepare starts the early work for u's login to project asking for want,
// in the background, and returns at once. The caller must have verified
// that u's key signed the connection's authentication.
func (m *Manager) Prepare(u store.User, project string, want Want) *EarlyHold {
	ctx, cancel := context.WithCancel(context.Background())
	h := &EarlyHold{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.prepare(ctx, u, project, want)
	}()
	return h
}

// Handover ends the hold once the connection's first session has attached
// (its own lease holds the container now) or failed to: the container is
// then retired after the grace, as any other.
func (h *EarlyHold) Handover() { h.end(false) }

// Abandon ends the hold of a connection that does not use the container:
// its first session was a file transfer, it timed out without a session,
// or it closed. A container this hold launched and nobody else holds is
// retired at once, not after the grace.
func (h *EarlyHold) Abandon() { h.end(true) }

func (h *EarlyHold) end(retireNow bool) {
	h.once.Do(func() {
		h.cancel()
		go func() {
			<-h.done
			if h.e == nil {
				return
			}
			if retireNow && h.op != nil {
				// Leaving cancelled the launch unless a session follows
				// it: let it end, so that what it made is retired now.
				<-h.op.done
			}
			h.m.unref(h.k, h.e, retireNow && h.op != nil)
		}()
	})
}

// prepare does the early work; ctx ends with the hold.
func (h *EarlyHold) prepare(ctx context.Context, u store.User, project string, want Want) {
	m := h.m
	if ValidateProject(project, "") != nil || checkUID(u) != nil {
		return
	}
	k := key{u.UID, project}
	m.mu.Lock()
	e, closed := m.entries[k], m.closed
	m.mu.Unlock()
	if closed || e != nil && e.snap.Load() != nil {
		return // a warm project: the session joins its container
	}
	start := time.Now()
	log := m.log.With("user", u.Name, "project", project)
	if _, err := m.store.GetProject(ctx, u.Name, project); err != nil {
		return // a new project: the session creates it
	}
	id, err := m.builder.ImageID(ctx, image.Ref(u.UID, project))
	if err != nil || id == "" {
		log.Debug("early: no image, a session builds it", "err", err)
		return
	}
	if m.gpus.count(ctx, u, project, want) > 0 {
		// GPUs wait for a session that asks: never hold or queue for one
		// early. The network is free to make.
		if ne, ok := m.rt.(networkEnsurer); ok {
			if err := ne.EnsureNetwork(ctx, userNetwork(u), m.networkLabels(u)); err != nil {
				log.Debug("early: network", "err", err)
			}
		}
		log.Debug("early: prepared, no start (GPUs)", "took", time.Since(start))
		return
	}
	// Counted as a holder, as Attach counts a lease.
	if e = m.hold(k, u); e == nil {
		return
	}
	h.e, h.k = e, k
	if err := e.mu.LockContext(ctx); err != nil {
		return
	}
	if ctx.Err() != nil || e.launch != nil || e.containerID != "" {
		// Handed over already, or someone else's launch or container.
		e.mu.Unlock()
		return
	}
	e.user = u
	h.op = m.startLaunch(e, u, want)
	e.mu.Unlock()
	log.Debug("early: launch started", "after", time.Since(start))
	// Following keeps the launch alive until a session follows it too;
	// its notices wait in the launch for that session.
	if err := h.op.follow(ctx, io.Discard); err == nil {
		log.Debug("early: container running", "took", time.Since(start))
	}
}

// unref drops one holder of e, as Release does for a lease. retireNow
// retires the container at once if that was the last holder; otherwise
// the grace starts.
func (m *Manager) unref(k key, e *entry, retireNow bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs != 0 || m.closed {
		return
	}
	gen := e.gen
	if retireNow {
		go m.expire(k, e, gen)
		return
	}
	e.timer = time.AfterFunc(m.cfg.RetireAfter, func() { m.expire(k, e, gen) })
}

// networkLabels are the labels of u's network.
func (m *Manager) networkLabels(u store.User) map[string]string {
	return map[string]string{LabelUser: u.Name, LabelUID: strconv.Itoa(u.UID), LabelInstance: m.cfg.Instance}
}
