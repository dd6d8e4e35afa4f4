package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Reconcile makes the store and the runtime agree after a start, a crash or
// a kill -9. Running containers of this gateway are adopted with no
// connection, so they retire after the grace unless their user comes back;
// stopped ones are removed; store rows whose container is gone are closed.
// Containers of other gateway instances are left alone.
//
// Labels are read only where the gateway set them itself (every label it
// reads is set on every container it creates, see containerLabels), and
// GPU slots are restored only where the store says the container holds
// them: an image's labels must never credit a user with GPUs.
func (m *Manager) Reconcile(ctx context.Context) error {
	live, err := m.rt.List(ctx, map[string]string{LabelInstance: m.cfg.Instance})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	allocs, err := m.store.ListAllocations(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	seen := map[string]bool{}
	kept := map[string]bool{} // names of adopted containers: their run directories stay
	for _, c := range live {
		seen[c.ID] = true
		uid, err := strconv.Atoi(c.Labels[LabelUID])
		project := c.Labels[LabelProject]
		if err != nil || uid <= 0 || ValidateProject(project, "") != nil || !c.Running || c.Labels[LabelRole] != "" {
			m.log.Info("reconcile: removing stopped, unlabelled or transfer container", "container", short(c.ID), "name", c.Name)
			if err := m.rt.Retire(ctx, c.ID); err != nil {
				m.log.Error("reconcile: remove", "container", short(c.ID), "err", err)
				continue
			}
			m.closeRow(ctx, c.ID, c.Labels[LabelUser], project, "reconcile: not running")
			continue
		}
		if !m.adopt(ctx, uid, project, c.Labels[LabelUser], c, allocs) {
			// A second container for the same project: keep one.
			if err := m.rt.Retire(ctx, c.ID); err == nil {
				m.closeRow(ctx, c.ID, c.Labels[LabelUser], project, "reconcile: duplicate")
			}
			continue
		}
		kept[c.Name] = true
	}
	m.sweepRunDirs(kept)
	m.reconcileGPUs(ctx, allocs)
	if n, err := m.store.FailRunningBuilds(ctx, "the gateway stopped during the build"); err != nil {
		m.log.Error("reconcile: builds", "err", err)
	} else if n > 0 {
		m.log.Warn("reconcile: closed builds left running", "count", n)
	}
	rows, err := m.store.ListContainers(ctx, true)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, r := range rows {
		if !seen[r.ID] {
			m.log.Warn("reconcile: store had a container the runtime does not", "container", short(r.ID), "user", r.User, "project", r.Project)
			m.closeRow(ctx, r.ID, r.User, r.Project, "reconcile: gone")
		}
	}
	return nil
}

// adopt takes over a running container with no connection and starts its
// grace timer. It returns false if the project already has a container.
func (m *Manager) adopt(ctx context.Context, uid int, project, userName string, c runtime.Container, allocs []store.Allocation) bool {
	id, name, created := c.ID, c.Name, c.Created
	u, err := m.store.GetUser(ctx, userName)
	if err != nil || u.UID != uid {
		u = store.User{Name: userName, UID: uid}
	}
	k := key{uid, project}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[k] != nil {
		return false
	}
	e := newEntry(u, project)
	e.containerID, e.imageID, e.name, e.launchedAt = id, c.ImageID, name, created
	e.shell, e.ret = m.runDirShell(name, uid), newRetirement()
	if p, err := m.store.GetProject(ctx, userName, project); err == nil {
		e.workspace = p.Workspace
	}
	e.gpus = m.restoreGPUs(u, project, c, allocs)
	e.publish()
	m.entries[k] = e
	gen := e.gen
	e.timer = time.AfterFunc(m.cfg.RetireAfter, func() { m.expire(k, e, gen) })
	m.log.Info("reconcile: adopted container", "user", userName, "project", project, "container", short(id), "retire_in", m.cfg.RetireAfter)
	if err := m.store.PutContainer(ctx, store.Container{ID: id, User: userName, Project: project, State: "running", CreatedAt: created}); err != nil {
		m.log.Error("reconcile: record", "container", short(id), "err", err)
	}
	m.event(ctx, store.Event{Type: "container.adopt", User: userName, Project: project, Container: id})
	return true
}

func (m *Manager) closeRow(ctx context.Context, id, user, project, why string) {
	if err := m.store.RetireContainer(ctx, id, time.Now()); err != nil {
		m.log.Debug("reconcile: close row", "container", short(id), "err", err)
	}
	m.event(ctx, store.Event{Type: "container.retire", User: user, Project: project, Container: id, Details: why})
}

// restoreGPUs takes back the slots the store records for a surviving
// container (by its ID, or by its name for a crash during its launch) and
// its user and project. Its labels only serve to report disagreements.
func (m *Manager) restoreGPUs(u store.User, project string, c runtime.Container, allocs []store.Allocation) []gpu.Slot {
	var uuids []string
	for _, a := range allocs {
		if (a.Container == c.ID || a.Container == c.Name) && a.UID == u.UID && a.Project == project {
			uuids = append(uuids, a.UUID)
		}
	}
	if labelled := c.Labels[LabelGPUUUIDs]; labelled != strings.Join(uuids, ",") && (labelled != "" || len(uuids) > 0) {
		m.log.Warn("reconcile: container's gpu label disagrees with the store; the store wins", "container", short(c.ID), "label", labelled, "store", strings.Join(uuids, ","))
	}
	if len(uuids) == 0 {
		return nil
	}
	if m.cfg.Alloc == nil {
		m.log.Error("reconcile: container holds GPUs but this gateway has none", "container", short(c.ID), "gpus", uuids)
		return nil
	}
	if err := m.cfg.Alloc.Restore(gpu.Holder{User: u.Name, UID: u.UID, Project: project, Since: c.Created}, uuids); err != nil {
		m.log.Error("reconcile: stored gpus disagree with the inventory", "container", short(c.ID), "err", err)
	}
	return m.cfg.Alloc.Held(u.UID, project)
}

// reconcileGPUs makes the store's allocations those of the containers that
// survived and were adopted with them, and logs the rows it drops.
func (m *Manager) reconcileGPUs(ctx context.Context, rows []store.Allocation) {
	stored := map[string]store.Allocation{}
	for _, r := range rows {
		stored[r.UUID] = r
	}
	var now []store.Allocation
	m.mu.Lock()
	for _, e := range m.entries {
		sn := e.snap.Load()
		if sn == nil {
			continue
		}
		for _, s := range sn.gpus {
			now = append(now, store.Allocation{UUID: s.UUID, Container: sn.id, User: sn.user.Name, UID: sn.user.UID, Project: e.project, GPUEq: s.GPUEq(), Since: sn.launchedAt})
			delete(stored, s.UUID)
		}
	}
	m.mu.Unlock()
	for _, r := range stored {
		m.log.Warn("reconcile: freeing gpu of a container that is gone", "gpu", r.UUID, "container", short(r.Container), "user", r.User, "project", r.Project)
		m.event(ctx, store.Event{Type: "gpu.release", User: r.User, Project: r.Project, Container: r.Container, Details: r.UUID + " (reconcile: container gone)"})
	}
	if err := m.store.ReplaceAllocations(ctx, now); err != nil {
		m.log.Error("reconcile: record gpu allocations", "err", err)
	}
}
