package session

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

// Many users log in at once on a host with two GPUs: every launch holds
// its slots alone, the rest wait their turn, and all slots come back.
func TestConcurrentLaunchesNeverShareAGPU(t *testing.T) {
	rt := newMem()
	m, u0 := newTestManager(t, rt, 0)
	inv := gpu.FakeN(2)
	slots, _ := inv.Slots(context.Background())
	m.cfg.Inventory, m.cfg.Alloc, m.cfg.Policy = inv, gpu.NewAllocator(slots), gpu.DefaultPolicy()

	var mu sync.Mutex
	inUse := map[string]string{} // uuid → user
	var bad []string
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := store.User{Name: fmt.Sprintf("u%d", i), UID: u0.UID + 1 + i, GID: u0.GID}
			l, err := m.Attach(context.Background(), u, "p", Want{GPUs: 1}, io.Discard)
			if err != nil {
				t.Errorf("%s: %v", u.Name, err)
				return
			}
			id := l.ContainerID()
			rt.mu.Lock()
			uuid := rt.running[id].Labels[LabelGPUUUIDs]
			rt.mu.Unlock()
			mu.Lock()
			if other, taken := inUse[uuid]; taken || uuid == "" {
				bad = append(bad, fmt.Sprintf("%s got %q, held by %q", u.Name, uuid, other))
			}
			inUse[uuid] = u.Name
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			delete(inUse, uuid)
			mu.Unlock()
			m.RetireContainer(context.Background(), u, "p", "done")
			l.Release()
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("a GPU was shared:\n%s", strings.Join(bad, "\n"))
	}
	slotsNow, queue := m.gpus.GPUStatus()
	for _, s := range slotsNow {
		if s.Holder != nil {
			t.Errorf("slot %s still held by %+v", s.Slot.Index, *s.Holder)
		}
	}
	if len(queue) != 0 {
		t.Errorf("queue not empty: %+v", queue)
	}
}

// The GPUs of a container that dies outside the gateway come back with the
// next watch round, without anybody logging in.
func TestWatchFreesGPUsOfDeadContainers(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	inv := gpu.FakeN(1)
	slots, _ := inv.Slots(context.Background())
	m.cfg.Inventory, m.cfg.Alloc, m.cfg.Policy = inv, gpu.NewAllocator(slots), gpu.DefaultPolicy()
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if eq, n := m.cfg.Alloc.UserEq(u.UID); n != 1 || eq != 1 {
		t.Fatalf("default login on a GPU host holds %v/%d", eq, n)
	}
	rt.Retire(context.Background(), l.ContainerID()) // docker rm -f
	m.sweepDead(context.Background())
	if _, n := m.cfg.Alloc.UserEq(u.UID); n != 0 {
		t.Error("the dead container's GPU is still held")
	}
	select {
	case <-l.Retired():
	default:
		t.Error("the lease was not told its container went")
	}
}

// A container launched while the watch lists the engine's containers is
// missing from that list: it must not be taken for dead.
func TestWatchSparesALaunchAfterItsList(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	ctx := context.Background()
	early, err := m.Attach(ctx, u, "early", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Release()
	var late *Lease
	rt.afterList = func() {
		rt.afterList = nil
		if late, err = m.Attach(ctx, u, "late", Default, io.Discard); err != nil {
			t.Error(err)
		}
	}
	m.sweepDead(ctx)
	if late == nil {
		t.Fatal("no late launch")
	}
	defer late.Release()
	select {
	case <-late.Retired():
		t.Fatalf("the watch retired a container launched during its list: %s", late.RetiredWhy())
	default:
	}
	if running, _, _ := rt.counts(); running != 2 {
		t.Errorf("running = %d, want both", running)
	}
}

// pluginInventory is a GPU inventory whose devices a device plugin hands
// out (kubernetes): its slot names are not CUDA's.
type pluginInventory struct{ gpu.Inventory }

func (pluginInventory) PluginDevices() bool { return true }

// CUDA sees the slots by UUID on Docker; with a device plugin, the
// environment leaves device selection to the plugin.
func TestGPUEnvironment(t *testing.T) {
	for _, plugin := range []bool{false, true} {
		rt := newMem()
		m, u := newTestManager(t, rt, time.Minute)
		inv := gpu.Inventory(gpu.FakeN(1))
		if plugin {
			inv = pluginInventory{inv}
		}
		slots, _ := inv.Slots(context.Background())
		m.cfg.Inventory, m.cfg.Alloc, m.cfg.Policy = inv, gpu.NewAllocator(slots), gpu.DefaultPolicy()
		l, err := m.Attach(context.Background(), u, "p", Want{GPUs: 1}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		rt.mu.Lock()
		spec := rt.running[l.ContainerID()]
		rt.mu.Unlock()
		env := strings.Join(spec.Env, " ")
		hasUUID := strings.Contains(env, "CUDA_VISIBLE_DEVICES="+slots[0].UUID) && strings.Contains(env, "NVIDIA_VISIBLE_DEVICES="+slots[0].UUID)
		if hasUUID == plugin || strings.Contains(env, "VISIBLE_DEVICES") == plugin {
			t.Errorf("plugin %v: env %s", plugin, env)
		}
		if spec.Labels[LabelGPUUUIDs] != slots[0].UUID {
			t.Errorf("plugin %v: the slot's label is %q", plugin, spec.Labels[LabelGPUUUIDs])
		}
		l.Release()
	}
}
