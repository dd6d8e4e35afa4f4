package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/store"
)

// Detached work. When the grace after the last connection runs out, a
// container that still runs something its user started (nohup, tmux, a
// Jupyter or VS Code server) stays, detached; the reaper watches its
// processes, and the grace starts again when the last one ends.

// holdsWork reports whether e's container still runs user processes, and
// marks it detached if so. The grace timer asks it; e.mu is held.
func (r *Reaper) holdsWork(ctx context.Context, e *entry) bool {
	sn := e.snap.Load()
	if sn == nil {
		return false
	}
	n, err := r.sampler.UserProcs(ctx, sn.id)
	if err != nil || n == 0 {
		return false
	}
	t := r.track(ctx, live{e, sn})
	r.mu.Lock()
	was := t.detached
	t.detached = true
	r.mu.Unlock()
	if !was {
		r.m.event(ctx, store.Event{Type: "container.detached", User: sn.user.Name, Project: e.project, Container: sn.id, Details: fmt.Sprintf("%d user process(es) running", n)})
		r.log.Info("container detached: user processes still run", "user", sn.user.Name, "project", e.project, "container", short(sn.id), "processes", n)
		r.persist(ctx, sn.id, t)
		select {
		case r.kick <- struct{}{}:
		default: // Run has one wake-up pending already
		}
	}
	return true
}

// sweepDetached looks at the processes of detached containers only.
func (r *Reaper) sweepDetached(ctx context.Context) {
	for _, c := range r.containers() {
		r.mu.Lock()
		t := r.tracked[c.sn.id]
		detached := t != nil && t.detached && !t.stopping
		r.mu.Unlock()
		if !detached {
			continue
		}
		if n, err := r.sampler.UserProcs(ctx, c.sn.id); err == nil && n == 0 {
			r.workEnded(c, t)
		}
	}
}

// workEnded starts the grace of a detached container whose processes all
// ended; the grace timer retires it unless something runs again by then.
func (r *Reaper) workEnded(c live, t *tracked) {
	r.mu.Lock()
	detached := t.detached
	r.mu.Unlock()
	if detached && r.m.regrace(c.e) {
		r.m.event(context.Background(), store.Event{Type: "container.work_ended", User: c.sn.user.Name, Project: c.e.project, Container: c.sn.id})
	}
}

// attach is a new session on e's container: activity, no longer detached,
// and notices from now on go to notice too. Sessions the user missed
// notices for hear them now, once.
func (r *Reaper) attach(ctx context.Context, e *entry, l *Lease, notice io.Writer) {
	if sn := e.snap.Load(); sn != nil {
		r.mu.Lock()
		if t := r.tracked[sn.id]; t != nil && t.detached {
			t.detached = false
		}
		r.mu.Unlock()
	}
	if notice == nil || notice == io.Discard {
		return // a forward: an open connection alone is not activity
	}
	e.sessionAt.Store(time.Now())
	e.watch(l, notice)
	r.greet(ctx, l.user, notice)
}

// greet shows the user the notices no session of theirs got.
func (r *Reaper) greet(ctx context.Context, u store.User, notice io.Writer) {
	ns, err := r.m.store.UnseenNotices(ctx, u.Name)
	if err != nil || len(ns) == 0 {
		return
	}
	ids := make([]int64, len(ns))
	var b strings.Builder
	for i, n := range ns {
		ids[i] = n.ID
		fmt.Fprintf(&b, "ds01: while you were away (%s): %s\n", n.Time.UTC().Format("Jan 2 15:04 UTC"), strings.TrimPrefix(n.Text, "ds01: "))
	}
	if _, err := io.WriteString(notice, b.String()); err != nil {
		return
	}
	if err := r.m.store.MarkNoticesSeen(ctx, ids...); err != nil {
		r.log.Error("lifecycle: mark notices seen", "user", u.Name, "err", err)
	}
}

// notify tells the user: every open session of the container, the alerts
// file in the workspace (DS01's), and the store, which shows the notice at
// the next login if no session got it.
func (r *Reaper) notify(ctx context.Context, c live, text string) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	seen := c.e.tell(text)
	r.mu.Lock()
	t := r.tracked[c.sn.id]
	r.mu.Unlock()
	now := time.Now()
	if t != nil && t.ws != nil {
		if err := t.ws.AppendFile(alertsFile, alertLine(now, text), 0o644); err != nil {
			r.log.Warn("lifecycle: alerts file", "user", c.sn.user.Name, "project", c.e.project, "err", err)
		}
	}
	n := store.Notice{Time: now, User: c.sn.user.Name, Project: c.e.project, Container: c.sn.id, Text: strings.TrimSuffix(text, "\n")}
	if _, err := r.m.store.AddNotice(ctx, n, seen); err != nil {
		r.log.Error("lifecycle: record notice", "err", err)
	}
}

// alertsFile is DS01's: notices appended for the user in the workspace.
const alertsFile = ".ds01-alerts"

// stop ends a container the policy says must go: the user hears it, their
// processes get SIGTERM and sigterm_grace to save checkpoints, then the
// container is stopped and removed. The workspace and image stay.
func (r *Reaper) stop(ctx context.Context, c live, s *lifecycle.Stop) {
	r.log.Info("lifecycle: stopping container", "user", c.sn.user.Name, "project", c.e.project, "container", short(c.sn.id), "why", s.Reason)
	r.notify(ctx, c, s.Text)
	if err := r.sampler.TerminateUser(ctx, c.sn.id, r.cfg.SigtermGrace); err != nil {
		r.log.Info("lifecycle: processes outlived the grace", "container", short(c.sn.id), "err", err)
	}
	e := c.e
	e.mu.Lock()
	if e.containerID == c.sn.id {
		r.m.retireLocked(ctx, e, "stopped: "+s.Reason)
	}
	left := e.containerID == c.sn.id
	e.mu.Unlock()
	if left {
		// The engine refused: the next sweep decides again.
		r.mu.Lock()
		if t := r.tracked[c.sn.id]; t != nil {
			t.stopping = false
		}
		r.mu.Unlock()
		return
	}
	r.m.dropIfUnused(e)
}

// Keep is container-keep: a lease that postpones the idle stop of the
// user's running container of project by d, within the caps. It returns
// until when the container is kept, which may be less than d from now
// (the maximum runtime, GPU pressure).
func (r *Reaper) Keep(ctx context.Context, u store.User, project string, d time.Duration) (time.Time, error) {
	if r == nil {
		return time.Time{}, errors.New("container-keep is not needed here: this gateway stops no container for idleness")
	}
	if err := ValidateProject(project, ""); err != nil {
		return time.Time{}, err
	}
	r.m.mu.Lock()
	e := r.m.entries[key{u.UID, project}]
	r.m.mu.Unlock()
	var sn *snapshot
	if e != nil {
		sn = e.snap.Load()
	}
	if sn == nil {
		return time.Time{}, fmt.Errorf("%s has no running container: connect first, then keep it", project)
	}
	c := live{e, sn}
	t := r.track(ctx, c)
	now := time.Now()
	ex := r.exempt.load(r.log)
	refs := r.m.refsOf(e)
	r.mu.Lock()
	in := r.input(c, t, refs, r.pressure, ex, now)
	st, until, err := lifecycle.Keep(in, t.st, d, now)
	if err == nil {
		t.st = st
	}
	r.mu.Unlock()
	if err != nil {
		return time.Time{}, err
	}
	r.persist(ctx, sn.id, t)
	r.m.event(ctx, store.Event{Type: "container.keepalive_set", User: u.Name, Project: project, Container: sn.id, Duration: d, Details: "until " + until.UTC().Format(time.RFC3339)})
	return until, nil
}

// checkPressure reads the GPU pressure and records when it changes.
func (r *Reaper) checkPressure(ctx context.Context) bool {
	a := r.m.cfg.Alloc
	if a == nil {
		return false
	}
	p := a.Pressure(r.cfg.PressureThreshold)
	r.mu.Lock()
	changed := p != r.pressure
	r.pressure = p
	r.mu.Unlock()
	if changed {
		typ := "gpu.pressure_off"
		if p {
			typ = "gpu.pressure_on"
		}
		r.m.event(ctx, store.Event{Type: typ})
		r.log.Info("lifecycle: gpu pressure", "on", p)
	}
	return p
}

// queueBound is the earliest idle stop of a GPU container: a request that
// waits in the GPU queue waits at most until then.
func (r *Reaper) queueBound() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best time.Time
	for _, t := range r.tracked {
		if t.gpu && t.dec.DeadlineReason == lifecycle.ReasonIdle && !t.dec.Deadline.IsZero() && (best.IsZero() || t.dec.Deadline.Before(best)) {
			best = t.dec.Deadline
		}
	}
	return best, !best.IsZero()
}

// describe is the container's lifecycle for listings, as of the last sweep.
func (r *Reaper) describe(id string) Life {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tracked[id]
	if t == nil {
		return Life{}
	}
	l := Life{Detached: t.detached, IdleSince: t.dec.IdleSince, Deadline: t.dec.Deadline, DeadlineReason: t.dec.DeadlineReason, KeepUntil: t.st.KeepUntil}
	if !t.st.KeepUntil.After(time.Now()) {
		l.KeepUntil = time.Time{}
	}
	if t.exempt.Idle || t.exempt.Runtime {
		l.Exempt = describeExemption(t.exempt)
	}
	return l
}

func describeExemption(ex lifecycle.Exemption) string {
	var what []string
	if ex.Idle {
		what = append(what, "idle_timeout_h")
	}
	if ex.Runtime {
		what = append(what, "max_runtime_h")
	}
	s := strings.Join(what, ", ")
	if !ex.Until.IsZero() {
		s += " until " + ex.Until.Format("2006-01-02")
	}
	return s
}
