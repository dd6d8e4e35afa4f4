package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Labels on a container that holds GPUs: after a crash, the allocation is
// rebuilt from them.
const (
	LabelGPUUUIDs = "ds01.gpu.uuids"
	LabelGPUEq    = "ds01.gpu.gpueq"
	LabelGPUCount = "ds01.gpu.count"
)

// Want is what a login asks for beyond its project: the login name's
// "+gpus=N" or "+cpu" (VS Code can vary nothing else).
type Want struct {
	// GPUs is the number of GPU slots; -1 means the project's default.
	GPUs int
}

// Default is a login that asks for nothing in particular.
var Default = Want{GPUs: -1}

// GPUs is the session layer's side of the GPU queue: how many slots a
// launch asks for, the wait for them, the container's devices and the
// store's record of them, their release; and what gpu-status and
// check-limits show.
type GPUs struct {
	*deps
	limits     userLimits
	containers *Manager
	catalog    *Catalog
}

// count is how many GPU slots a launch asks for.
func (g *GPUs) count(ctx context.Context, u store.User, project string, want Want) int {
	if want.GPUs >= 0 {
		return want.GPUs
	}
	if p, err := g.store.GetProject(ctx, u.Name, project); err == nil && p.GPUs >= 0 {
		return p.GPUs
	}
	if g.cfg.Alloc != nil && g.cfg.Alloc.Total() > 0 {
		return 1
	}
	return 0
}

// acquire waits for n slots, telling the user where they stand in the
// queue. It runs in the project's launch, which every connection to the
// project follows.
func (g *GPUs) acquire(ctx context.Context, u store.User, project string, n int, l gpu.Limits, notice io.Writer) ([]gpu.Slot, error) {
	if n <= 0 {
		return nil, nil
	}
	if g.cfg.Alloc == nil || g.cfg.Alloc.Total() == 0 {
		return nil, fmt.Errorf("%w: this host has no GPUs; connect as %s+cpu", ErrLimit, project)
	}
	var last gpu.QueueStatus
	progress := func(st gpu.QueueStatus) {
		if st == last {
			return
		}
		last = st
		bound := ""
		if !st.Bound.IsZero() {
			bound = fmt.Sprintf("; an idle GPU container stops at %s UTC unless used", st.Bound.UTC().Format("15:04"))
		}
		fmt.Fprintf(notice, "ds01: waiting for %d GPU(s): position %d of %d in the queue; %d of %d slots held by %d container(s)%s (gpu-status shows who; Ctrl-C leaves the queue)\n",
			n, st.Position, st.Waiting, st.Held, st.Total, st.Holders, bound)
	}
	start := time.Now()
	slots, err := g.cfg.Alloc.Acquire(ctx, gpu.Request{
		User: u.Name, UID: u.UID, Project: project, Slots: n,
		Quota: gpu.Quota{MaxGPUEq: l.MaxGPUEq, MaxSlotsPerContainer: l.MaxSlotsPerContainer},
	}, g.cfg.QueueTimeout, progress)
	var refused *gpu.RefusedError
	switch {
	case errors.As(err, &refused):
		g.event(ctx, store.Event{Type: "gpu.reject", User: u.Name, Project: project, Details: refused.Reason + ": " + refused.Msg})
		return nil, fmt.Errorf("%w: %s", ErrLimit, refused.Msg)
	case err != nil:
		return nil, err
	}
	if last.Position > 0 {
		fmt.Fprintf(notice, "ds01: your turn after %s in the queue\n", time.Since(start).Round(time.Second))
	}
	return slots, nil
}

// notice is the one line a session starts with when it holds GPUs.
func (g *GPUs) notice(u store.User, slots []gpu.Slot, l gpu.Limits) string {
	names := make([]string, len(slots))
	for i, s := range slots {
		names[i] = fmt.Sprintf("%s (%s)", s.Index, s.Name)
	}
	held, _ := g.cfg.Alloc.UserEq(u.UID)
	limit := "unlimited"
	if l.MaxGPUEq != nil {
		limit = gpu.FormatEq(*l.MaxGPUEq)
	}
	msg := fmt.Sprintf("ds01: GPU %s allocated, %s of %s gpueq in use\n", strings.Join(names, ", "), gpu.FormatEq(held), limit)
	// DS01 warns at 80 % of the quota: the next request may be refused.
	if l.MaxGPUEq != nil && *l.MaxGPUEq > 0 && held >= 0.8**l.MaxGPUEq-1e-9 && held < *l.MaxGPUEq-1e-9 {
		msg += fmt.Sprintf("ds01: that is %d%% of your GPU quota (check-limits)\n", int(100*held / *l.MaxGPUEq + 0.5))
	}
	return msg
}

// pluginDevices is an inventory whose slots reach the container through
// the node's device plugin (kubernetes: the pod requests the resource,
// and the plugin sets NVIDIA_VISIBLE_DEVICES to the devices it chose).
// Its slot UUIDs mean nothing to CUDA, so they are not put in the
// environment.
type pluginDevices interface {
	PluginDevices() bool
}

// spec puts the slots into the container: exactly these devices, the
// environment CUDA programs read, and labels to rebuild the allocation
// from. A container without GPUs gets NVIDIA_VISIBLE_DEVICES=void, so a
// CUDA base image's "all" cannot hand it every GPU of the host.
func (g *GPUs) spec(spec *runtime.ContainerSpec, slots []gpu.Slot) {
	if len(slots) == 0 {
		spec.Env = append(spec.Env, "NVIDIA_VISIBLE_DEVICES=void", "CUDA_VISIBLE_DEVICES=")
		return
	}
	uuids := make([]string, len(slots))
	eq := 0.0
	for i, s := range slots {
		uuids[i] = s.UUID
		eq += s.GPUEq()
	}
	list := strings.Join(uuids, ",")
	if pd, ok := g.cfg.Inventory.(pluginDevices); ok && pd.PluginDevices() {
		// The node's device plugin names the devices itself; CUDA must see
		// all it was given, not look for slot names it does not know.
		spec.Env = append(spec.Env, "CUDA_DEVICE_ORDER=PCI_BUS_ID")
	} else {
		spec.Env = append(spec.Env, "NVIDIA_VISIBLE_DEVICES="+list, "CUDA_VISIBLE_DEVICES="+list, "CUDA_DEVICE_ORDER=PCI_BUS_ID")
	}
	spec.Labels[LabelGPUUUIDs] = list
	spec.Labels[LabelGPUEq] = strconv.FormatFloat(eq, 'f', 3, 64)
	spec.Labels[LabelGPUCount] = strconv.Itoa(len(slots))
	if g.cfg.Inventory != nil && g.cfg.Inventory.Real() {
		spec.GPUs = uuids
	}
}

// record writes a container's slots to the store, under container (its
// name before it exists, its ID after).
func (g *GPUs) record(ctx context.Context, u store.User, project, container string, slots []gpu.Slot, since time.Time) {
	if len(slots) == 0 {
		return
	}
	as := make([]store.Allocation, len(slots))
	for i, s := range slots {
		as[i] = store.Allocation{UUID: s.UUID, Container: container, User: u.Name, UID: u.UID, Project: project, GPUEq: s.GPUEq(), Since: since}
	}
	if err := g.store.PutAllocations(ctx, as); err != nil {
		g.log.Error("record gpu allocation", "container", short(container), "err", err)
	}
}

// free gives the project's slots back and forgets their store rows,
// under any of the container's names for them.
func (g *GPUs) free(ctx context.Context, u store.User, project string, containers ...string) {
	if g.cfg.Alloc == nil {
		return
	}
	freed := g.cfg.Alloc.Release(u.UID, project)
	if len(freed) == 0 {
		return
	}
	for _, c := range containers {
		if c == "" {
			continue
		}
		if err := g.store.DeleteAllocations(ctx, c); err != nil {
			g.log.Error("record gpu release", "container", short(c), "err", err)
		}
	}
	id := ""
	if len(containers) > 0 {
		id = containers[0]
	}
	g.event(ctx, store.Event{Type: "gpu.release", User: u.Name, Project: project, Container: id, Details: slotList(freed)})
}

func slotList(slots []gpu.Slot) string {
	ids := make([]string, len(slots))
	for i, s := range slots {
		ids[i] = s.UUID
	}
	return strings.Join(ids, ",")
}

// Limits describes the user's limits and what they use now, for
// check-limits.
type Limits struct {
	Group      string
	Limits     gpu.Limits
	GPUEq      float64
	Slots      int
	Containers int
}

// UserLimits returns the user's limits and current usage.
func (g *GPUs) UserLimits(_ context.Context, u store.User) Limits {
	l, group := g.limits.of(u)
	out := Limits{Group: group, Limits: l}
	if g.cfg.Alloc != nil {
		out.GPUEq, out.Slots = g.cfg.Alloc.UserEq(u.UID)
	}
	// The count the cap is checked against: containers running or being
	// launched, and rsync's transfer containers.
	out.Containers = g.containers.containerCount(u.UID)
	return out
}

// GPUStatus is every slot with its holder, and the queue.
func (g *GPUs) GPUStatus() ([]gpu.SlotState, []gpu.Waiter) {
	if g.cfg.Alloc == nil {
		return nil, nil
	}
	return g.cfg.Alloc.Snapshot()
}

// GPUUtilization is a slot's utilisation where the inventory knows it.
func (g *GPUs) GPUUtilization(uuid string) (int, bool) {
	if g.cfg.Inventory == nil {
		return 0, false
	}
	return g.cfg.Inventory.Utilization(uuid)
}

// SetProjectGPUs sets how many GPUs the project's logins get by default.
func (g *GPUs) SetProjectGPUs(ctx context.Context, u store.User, project string, n int) error {
	if _, err := g.catalog.Project(ctx, u, project); err != nil {
		return err
	}
	return g.store.SetProjectGPUs(ctx, u.Name, project, n)
}

// restore takes back the slots the store records for a surviving
// container (by its ID, or by its name for a crash during its launch) and
// its user and project. Its labels only serve to report disagreements.
func (g *GPUs) restore(u store.User, project string, c runtime.Container, allocs []store.Allocation) []gpu.Slot {
	var uuids []string
	for _, a := range allocs {
		if (a.Container == c.ID || a.Container == c.Name) && a.UID == u.UID && a.Project == project {
			uuids = append(uuids, a.UUID)
		}
	}
	if labelled := c.Labels[LabelGPUUUIDs]; labelled != strings.Join(uuids, ",") && (labelled != "" || len(uuids) > 0) {
		g.log.Warn("reconcile: container's gpu label disagrees with the store; the store wins", "container", short(c.ID), "label", labelled, "store", strings.Join(uuids, ","))
	}
	if len(uuids) == 0 {
		return nil
	}
	if g.cfg.Alloc == nil {
		g.log.Error("reconcile: container holds GPUs but this gateway has none", "container", short(c.ID), "gpus", uuids)
		return nil
	}
	if err := g.cfg.Alloc.Restore(gpu.Holder{User: u.Name, UID: u.UID, Project: project, Since: c.Created}, uuids); err != nil {
		g.log.Error("reconcile: stored gpus disagree with the inventory", "container", short(c.ID), "err", err)
	}
	return g.cfg.Alloc.Held(u.UID, project)
}

// reconcile makes the store's allocations those of the containers that
// survived and were adopted with them, and logs the rows it drops.
func (g *GPUs) reconcile(ctx context.Context, rows []store.Allocation, live []*snapshot) {
	stored := map[string]store.Allocation{}
	for _, r := range rows {
		stored[r.UUID] = r
	}
	var now []store.Allocation
	for _, sn := range live {
		for _, s := range sn.gpus {
			now = append(now, store.Allocation{UUID: s.UUID, Container: sn.id, User: sn.user.Name, UID: sn.user.UID, Project: sn.project, GPUEq: s.GPUEq(), Since: sn.launchedAt})
			delete(stored, s.UUID)
		}
	}
	for _, r := range stored {
		g.log.Warn("reconcile: freeing gpu of a container that is gone", "gpu", r.UUID, "container", short(r.Container), "user", r.User, "project", r.Project)
		g.event(ctx, store.Event{Type: "gpu.release", User: r.User, Project: r.Project, Container: r.Container, Details: r.UUID + " (reconcile: container gone)"})
	}
	if err := g.store.ReplaceAllocations(ctx, now); err != nil {
		g.log.Error("reconcile: record gpu allocations", "err", err)
	}
}
