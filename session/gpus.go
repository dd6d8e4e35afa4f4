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

// ErrLimit is wrapped by refusals that name a limit of the user's.
var ErrLimit = errors.New("limit reached")

// limitsFor resolves the user's limits from the policy.
func (m *Manager) limitsFor(u store.User) (gpu.Limits, string) {
	if m.cfg.Policy == nil {
		return gpu.Limits{}, ""
	}
	return m.cfg.Policy.For(u.Name, u.Group)
}

// containerLimits are the runtime limits of the user's containers: the
// configuration's, overridden by the limits file where it sets a value.
func (m *Manager) containerLimits(l gpu.Limits) runtime.Limits {
	out := m.cfg.Limits
	if !m.cfg.LimitsFromPolicy {
		return out
	}
	if l.Memory != nil {
		out.Memory = *l.Memory
	}
	if l.ShmSize != nil {
		out.ShmSize = *l.ShmSize
	}
	if l.PidsLimit != nil {
		out.PidsLimit = *l.PidsLimit
	}
	if l.MaxCPUs != nil {
		n := int64(*l.MaxCPUs * 1e9)
		if m.cfg.MaxNanoCPUs > 0 && n > m.cfg.MaxNanoCPUs {
			n = m.cfg.MaxNanoCPUs // Docker refuses more than the host has
		}
		out.NanoCPUs = n
	}
	return out
}

// gpuCount is how many GPU slots a launch asks for.
func (m *Manager) gpuCount(ctx context.Context, u store.User, project string, want Want) int {
	if want.GPUs >= 0 {
		return want.GPUs
	}
	if p, err := m.store.GetProject(ctx, u.Name, project); err == nil && p.GPUs >= 0 {
		return p.GPUs
	}
	if m.cfg.Alloc != nil && m.cfg.Alloc.Total() > 0 {
		return 1
	}
	return 0
}

// acquireGPUs waits for n slots, telling the user where they stand in the
// queue. It runs in the project's launch, which every connection to the
// project follows.
func (m *Manager) acquireGPUs(ctx context.Context, u store.User, project string, n int, l gpu.Limits, notice io.Writer) ([]gpu.Slot, error) {
	if n <= 0 {
		return nil, nil
	}
	if m.cfg.Alloc == nil || m.cfg.Alloc.Total() == 0 {
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
	slots, err := m.cfg.Alloc.Acquire(ctx, gpu.Request{
		User: u.Name, UID: u.UID, Project: project, Slots: n,
		Quota: gpu.Quota{MaxGPUEq: l.MaxGPUEq, MaxSlotsPerContainer: l.MaxSlotsPerContainer},
	}, m.cfg.QueueTimeout, progress)
	var refused *gpu.RefusedError
	switch {
	case errors.As(err, &refused):
		m.event(ctx, store.Event{Type: "gpu.reject", User: u.Name, Project: project, Details: refused.Reason + ": " + refused.Msg})
		return nil, fmt.Errorf("%w: %s", ErrLimit, refused.Msg)
	case err != nil:
		return nil, err
	}
	if last.Position > 0 {
		fmt.Fprintf(notice, "ds01: your turn after %s in the queue\n", time.Since(start).Round(time.Second))
	}
	return slots, nil
}

// gpuNotice is the one line a session starts with when it holds GPUs.
func (m *Manager) gpuNotice(u store.User, slots []gpu.Slot, l gpu.Limits) string {
	names := make([]string, len(slots))
	for i, s := range slots {
		names[i] = fmt.Sprintf("%s (%s)", s.Index, s.Name)
	}
	held, _ := m.cfg.Alloc.UserEq(u.UID)
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

// gpuSpec puts the slots into the container: exactly these devices, the
// environment CUDA programs read, and labels to rebuild the allocation
// from. A container without GPUs gets NVIDIA_VISIBLE_DEVICES=void, so a
// CUDA base image's "all" cannot hand it every GPU of the host.
func (m *Manager) gpuSpec(spec *runtime.ContainerSpec, slots []gpu.Slot) {
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
	spec.Env = append(spec.Env, "NVIDIA_VISIBLE_DEVICES="+list, "CUDA_VISIBLE_DEVICES="+list, "CUDA_DEVICE_ORDER=PCI_BUS_ID")
	spec.Labels[LabelGPUUUIDs] = list
	spec.Labels[LabelGPUEq] = strconv.FormatFloat(eq, 'f', 3, 64)
	spec.Labels[LabelGPUCount] = strconv.Itoa(len(slots))
	if m.cfg.Inventory != nil && m.cfg.Inventory.Real() {
		spec.GPUs = uuids
	}
}

// recordGPUs writes a container's slots to the store, under container (its
// name before it exists, its ID after).
func (m *Manager) recordGPUs(ctx context.Context, u store.User, project, container string, slots []gpu.Slot, since time.Time) {
	if len(slots) == 0 {
		return
	}
	as := make([]store.Allocation, len(slots))
	for i, s := range slots {
		as[i] = store.Allocation{UUID: s.UUID, Container: container, User: u.Name, UID: u.UID, Project: project, GPUEq: s.GPUEq(), Since: since}
	}
	if err := m.store.PutAllocations(ctx, as); err != nil {
		m.log.Error("record gpu allocation", "container", short(container), "err", err)
	}
}

// releaseGPUs frees the slots of e's container id (named name); the
// queue's head gets them. e.mu is held.
func (m *Manager) releaseGPUs(ctx context.Context, e *entry, id string) {
	e.gpus = nil
	m.freeSlots(ctx, e.user, e.project, id, e.name)
}

// freeSlots gives the project's slots back and forgets their store rows,
// under any of the container's names for them.
func (m *Manager) freeSlots(ctx context.Context, u store.User, project string, containers ...string) {
	if m.cfg.Alloc == nil {
		return
	}
	freed := m.cfg.Alloc.Release(u.UID, project)
	if len(freed) == 0 {
		return
	}
	for _, c := range containers {
		if c == "" {
			continue
		}
		if err := m.store.DeleteAllocations(ctx, c); err != nil {
			m.log.Error("record gpu release", "container", short(c), "err", err)
		}
	}
	id := ""
	if len(containers) > 0 {
		id = containers[0]
	}
	m.event(ctx, store.Event{Type: "gpu.release", User: u.Name, Project: project, Container: id, Details: slotList(freed)})
}

func slotList(slots []gpu.Slot) string {
	ids := make([]string, len(slots))
	for i, s := range slots {
		ids[i] = s.UUID
	}
	return strings.Join(ids, ",")
}

// Watch notices containers that died on their own or that an admin
// removed (docker rm -f), every interval until ctx ends, and retires them
// so their GPUs go back to the queue at once rather than at the next login.
func (m *Manager) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.sweepDead(ctx)
	}
}

func (m *Manager) sweepDead(ctx context.Context) {
	live, err := m.rt.List(ctx, map[string]string{LabelInstance: m.cfg.Instance})
	if err != nil {
		m.log.Warn("watch: list containers", "err", err)
		return
	}
	running := map[string]bool{}
	for _, c := range live {
		if c.Running {
			running[c.ID] = true
		}
	}
	m.mu.Lock()
	var dead []*entry
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil && !running[sn.id] {
			dead = append(dead, e)
		}
	}
	m.mu.Unlock()
	for _, e := range dead {
		if !e.mu.TryLock() {
			continue // a retire is under way; next round
		}
		if sn := e.snap.Load(); sn != nil && !running[sn.id] {
			m.log.Warn("container gone", "user", sn.user.Name, "project", e.project, "container", short(sn.id))
			m.retireLocked(ctx, e, "stopped outside the gateway")
		}
		e.mu.Unlock()
	}
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
func (m *Manager) UserLimits(_ context.Context, u store.User) Limits {
	l, group := m.limitsFor(u)
	out := Limits{Group: group, Limits: l}
	if m.cfg.Alloc != nil {
		out.GPUEq, out.Slots = m.cfg.Alloc.UserEq(u.UID)
	}
	// The count the cap is checked against: containers running or being
	// launched, and rsync's transfer containers.
	m.mu.Lock()
	out.Containers = m.containersOf(u.UID, nil)
	m.mu.Unlock()
	return out
}

// GPUStatus is every slot with its holder, and the queue.
func (m *Manager) GPUStatus() ([]gpu.SlotState, []gpu.Waiter) {
	if m.cfg.Alloc == nil {
		return nil, nil
	}
	return m.cfg.Alloc.Snapshot()
}

// GPUUtilization is a slot's utilisation where the inventory knows it.
func (m *Manager) GPUUtilization(uuid string) (int, bool) {
	if m.cfg.Inventory == nil {
		return 0, false
	}
	return m.cfg.Inventory.Utilization(uuid)
}

// SetProjectGPUs sets how many GPUs the project's logins get by default.
func (m *Manager) SetProjectGPUs(ctx context.Context, u store.User, project string, n int) error {
	if _, err := m.Project(ctx, u, project); err != nil {
		return err
	}
	return m.store.SetProjectGPUs(ctx, u.Name, project, n)
}
