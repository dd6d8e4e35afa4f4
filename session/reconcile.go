package session

import (
	"context"
	"fmt"
	"strconv"
	"time"

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
	r := reconciler{deps: m.deps, containers: m, dirs: m.dirs, gpus: m.gpus}
	return r.run(ctx)
}

// reconciler is one Reconcile: it adopts surviving containers into the
// Manager's slots, and removes or closes what did not survive.
type reconciler struct {
	*deps
	containers *Manager
	dirs       *dirs
	gpus       *GPUs
}

func (r reconciler) run(ctx context.Context) error {
	live, err := r.rt.List(ctx, map[string]string{LabelInstance: r.cfg.Instance})
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	allocs, err := r.store.ListAllocations(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	seen := map[string]bool{}
	kept := map[string]bool{} // names of adopted containers: their run directories stay
	var holders []runtime.Container
	adopted := map[key]bool{}
	for _, c := range live {
		if c.Labels[LabelRole] == RoleHolder {
			holders = append(holders, c) // after the project containers
			continue
		}
		seen[c.ID] = true
		uid, err := strconv.Atoi(c.Labels[LabelUID])
		project := c.Labels[LabelProject]
		if err != nil || uid <= 0 || ValidateProject(project, "") != nil || !c.Running || c.Labels[LabelRole] != "" {
			r.log.Info("reconcile: removing stopped, unlabelled or transfer container", "container", short(c.ID), "name", c.Name)
			if err := r.rt.Retire(ctx, c.ID); err != nil {
				r.log.Error("reconcile: remove", "container", short(c.ID), "err", err)
				continue
			}
			r.closeRow(ctx, c.ID, c.Labels[LabelUser], project, "reconcile: not running")
			continue
		}
		if !r.adopt(ctx, uid, project, c.Labels[LabelUser], c, allocs) {
			// A second container for the same project: keep one.
			if err := r.rt.Retire(ctx, c.ID); err == nil {
				r.closeRow(ctx, c.ID, c.Labels[LabelUser], project, "reconcile: duplicate")
			}
			continue
		}
		kept[c.Name] = true
		adopted[key{uid, project}] = true
	}
	uses := r.containers.holders.lastUses(ctx)
	r.containers.holders.adopt(ctx, holders, adopted, uses)
	r.dirs.sweepRun(kept)
	r.gpus.reconcile(ctx, allocs, r.containers.published())
	if n, err := r.store.FailRunningBuilds(ctx, "the gateway stopped during the build"); err != nil {
		r.log.Error("reconcile: builds", "err", err)
	} else if n > 0 {
		r.log.Warn("reconcile: closed builds left running", "count", n)
	}
	rows, err := r.store.ListContainers(ctx, true)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, row := range rows {
		if !seen[row.ID] {
			r.log.Warn("reconcile: store had a container the runtime does not", "container", short(row.ID), "user", row.User, "project", row.Project)
			r.closeRow(ctx, row.ID, row.User, row.Project, "reconcile: gone")
		}
	}
	// Images the containers removed above ran, or that a crash left
	// behind: on their own, not to delay the start; a shutdown stops it.
	go r.containers.images.startupPrune(ctx)
	// The holders a host reboot took, for the projects used lately.
	go r.containers.holders.warm(ctx, uses, adopted)
	return nil
}

// adopt takes over a running container with no connection and starts its
// grace timer. It returns false if the project already has a container.
func (r reconciler) adopt(ctx context.Context, uid int, project, userName string, c runtime.Container, allocs []store.Allocation) bool {
	id, name, created := c.ID, c.Name, c.Created
	u, err := r.store.GetUser(ctx, userName)
	if err != nil || u.UID != uid {
		u = store.User{Name: userName, UID: uid}
	}
	adopted := r.containers.adopt(key{uid, project}, func() *entry {
		e := newEntry(u, project)
		e.containerID, e.imageID, e.name, e.launchedAt = id, c.ImageID, name, created
		e.shell, e.ret = r.dirs.runShell(name, uid), newRetirement()
		if p, err := r.store.GetProject(ctx, userName, project); err == nil {
			e.workspace = p.Workspace
		}
		e.gpus = r.gpus.restore(u, project, c, allocs)
		return e
	})
	if !adopted {
		return false
	}
	r.log.Info("reconcile: adopted container", "user", userName, "project", project, "container", short(id), "retire_in", r.cfg.RetireAfter)
	if err := r.store.PutContainer(ctx, store.Container{ID: id, User: userName, Project: project, State: "running", CreatedAt: created}); err != nil {
		r.log.Error("reconcile: record", "container", short(id), "err", err)
	}
	r.event(ctx, store.Event{Type: "container.adopt", User: userName, Project: project, Container: id})
	return true
}

func (r reconciler) closeRow(ctx context.Context, id, user, project, why string) {
	if err := r.store.RetireContainer(ctx, id, time.Now()); err != nil {
		r.log.Debug("reconcile: close row", "container", short(id), "err", err)
	}
	// Its lifecycle state goes with it (the reaper's forget does this on
	// every other retire path).
	if err := r.store.DeleteLifecycle(ctx, id); err != nil {
		r.log.Debug("reconcile: lifecycle state", "container", short(id), "err", err)
	}
	r.event(ctx, store.Event{Type: "container.retire", User: user, Project: project, Container: id, Details: why})
}
