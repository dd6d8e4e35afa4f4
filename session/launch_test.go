package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// A lease's Release must not read the entry's user while another
// connection's Attach updates it (issue 10, item 11: a data race, caught
// under -race).
func TestReleaseRacesAnAttachUpdatingTheUser(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	first, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := u
			v.Group = fmt.Sprintf("g%d", i) // a changed record, as after `user add --group`
			l, err := m.Attach(context.Background(), v, "p", Default, io.Discard)
			if err != nil {
				t.Error(err)
				return
			}
			l.Release()
		}()
	}
	first.Release()
	wg.Wait()
}

// limitContainers gives every user at most n containers.
func limitContainers(t *testing.T, m *Manager, n int) {
	t.Helper()
	p, err := gpu.ParsePolicy([]byte(fmt.Sprintf("defaults:\n  max_containers_per_user: %d\n", n)), "")
	if err != nil {
		t.Fatal(err)
	}
	m.cfg.Policy = p
}

// Two logins at once to two projects, with max_containers_per_user 1: one
// container, one clear refusal (issue 10, item 11: both got through, five
// times out of five).
func TestContainerCapHoldsForSimultaneousLogins(t *testing.T) {
	for round := range 5 {
		rt := newMem()
		rt.delay = 30 * time.Millisecond
		m, u := newTestManager(t, rt, time.Hour)
		limitContainers(t, m, 1)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = m.Attach(context.Background(), u, fmt.Sprintf("p%d", i), Default, io.Discard)
			}()
		}
		wg.Wait()
		if running, _, _ := rt.counts(); running != 1 {
			t.Fatalf("round %d: %d containers with a cap of 1 (errors %v)", round, running, errs)
		}
		refused := 0
		for _, err := range errs {
			if errors.Is(err, ErrLimit) && strings.Contains(err.Error(), "you run 1 of 1 containers") {
				refused++
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: want one refusal naming the cap, got %v", round, errs)
		}
	}
}

// blockingBuilder holds every build until released, so a test can line up
// connections behind a long first launch.
type blockingBuilder struct {
	*memRuntime
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	n       int // builds started
}

func (b *blockingBuilder) Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	b.mu.Lock()
	b.n++
	b.mu.Unlock()
	b.started <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return b.memRuntime.Build(ctx, spec, out)
}

func newBlockingManager(t *testing.T) (*Manager, *blockingBuilder, store.User) {
	rt := newMem()
	rt.images = map[string]runtime.Image{} // no image yet: the first login builds
	b := &blockingBuilder{memRuntime: rt, started: make(chan struct{}, 4), release: make(chan struct{})}
	m, u := newTestManager(t, rt, time.Hour)
	m.builder = b
	return m, b, u
}

// While one connection's first login builds the image, another connection
// to the project (VS Code opens several) can give up at once; it used to
// wait on the project's lock for the whole build, deaf to its context.
func TestWaiterForALaunchCanGiveUp(t *testing.T) {
	m, b, u := newBlockingManager(t)
	first := make(chan error, 1)
	go func() {
		l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
		if err == nil {
			defer l.Release()
		}
		first <- err
	}()
	<-b.started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Attach(ctx, u, "p", Default, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("second attach during the build: %v after %s, want to give up at its deadline", err, time.Since(start))
	}
	// Listings and a retire do not wait for the build either.
	done := make(chan struct{})
	go func() {
		m.catalog.Containers(context.Background(), u, false)
		m.RetireContainer(context.Background(), u, "p", "test")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("container-list or container-retire waited for the build")
	}
	close(b.release)
	if err := <-first; err != nil {
		t.Fatalf("the first login failed: %v", err)
	}
}

// The connection that started a launch leaves; the one that followed it
// still gets its container (the build used to run on the first caller's
// context and fail for everyone).
func TestLaunchOutlivesTheConnectionThatStartedIt(t *testing.T) {
	m, b, u := newBlockingManager(t)
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := m.Attach(ctx1, u, "p", Default, io.Discard)
		first <- err
	}()
	<-b.started
	second := make(chan error, 1)
	var out syncWriter
	go func() {
		l, err := m.Attach(context.Background(), u, "p", Default, &out)
		if err == nil {
			if l.ContainerID() == "" {
				err = errors.New("lease without a container")
			}
			l.Release()
		}
		second <- err
	}()
	waitFor(t, "the second connection to follow the launch", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		e := m.entries[key{u.UID, "p"}]
		return e != nil && e.refs == 2
	})
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first connection: %v, want canceled", err)
	}
	close(b.release)
	if err := <-second; err != nil {
		t.Fatalf("the follower lost its launch when the first connection left: %v", err)
	}
	if !strings.Contains(out.String(), "ready") {
		t.Errorf("the follower did not see the launch's notices: %q", out.String())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n != 1 {
		t.Errorf("%d builds: the follower's build was lost with the first connection and started again", b.n)
	}
}

// A lone connection that leaves cancels its launch: the build stops, and
// nothing is left running.
func TestLaunchNobodyWaitsForIsCancelled(t *testing.T) {
	m, b, u := newBlockingManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Attach(ctx, u, "p", Default, io.Discard)
		done <- err
	}()
	<-b.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("attach: %v", err)
	}
	waitFor(t, "the launch to end", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		e := m.entries[key{u.UID, "p"}]
		if e == nil {
			return true
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.launch == nil
	})
	if running, launches, _ := b.counts(); running != 0 || launches != 0 {
		t.Errorf("a cancelled launch left %d running (%d launched)", running, launches)
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Labels a user's image carries must not credit GPUs after a restart: the
// gateway sets every label it reads on the containers it creates, and
// reconcile restores only the slots the store records (issue 10, item 4).
func TestReconcileTrustsTheStoreNotLabels(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	inv := gpu.FakeN(2)
	slots, _ := inv.Slots(context.Background())
	m.cfg.Inventory, m.cfg.Alloc, m.cfg.Policy = inv, gpu.NewAllocator(slots), gpu.DefaultPolicy()

	// A CPU container launched by the gateway: the GPU label is set, empty.
	l, err := m.Attach(context.Background(), u, "cpu", Want{GPUs: 0}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	labels := rt.running[l.ContainerID()].Labels
	for _, k := range []string{LabelGPUUUIDs, LabelRole, LabelGPUCount} {
		if _, ok := labels[k]; !ok {
			t.Errorf("label %s not set by the gateway: an image's value would show through", k)
		}
	}
	// A container whose labels claim both GPUs, as an image's LABEL
	// carried into an old gateway's container would.
	rt.mu.Lock()
	rt.running["forged"] = runtime.ContainerSpec{Name: "ds01-ann.q-abc", Labels: map[string]string{
		LabelUser: u.Name, LabelUID: fmt.Sprint(u.UID), LabelProject: "q", LabelInstance: "test",
		LabelGPUUUIDs: slots[0].UUID + "," + slots[1].UUID}}
	// And one whose GPU the store recorded under its name only: the
	// gateway died between recording and launching.
	rt.running["crashed"] = runtime.ContainerSpec{Name: "ds01-ann.r-def", Labels: map[string]string{
		LabelUser: u.Name, LabelUID: fmt.Sprint(u.UID), LabelProject: "r", LabelInstance: "test",
		LabelGPUUUIDs: slots[1].UUID}}
	rt.mu.Unlock()
	if err := m.store.PutAllocations(context.Background(), []store.Allocation{{UUID: slots[1].UUID, Container: "ds01-ann.r-def", User: u.Name, UID: u.UID, Project: "r", GPUEq: 1}}); err != nil {
		t.Fatal(err)
	}
	m2 := New(*m.cfg, rt, rt, m.store, m.log)
	m2.cfg.Alloc = gpu.NewAllocator(slots)
	t.Cleanup(m2.Close)
	if err := m2.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	st, _ := m2.gpus.GPUStatus()
	for _, s := range st {
		if s.Holder != nil {
			held[s.Slot.UUID] = s.Holder.Project
		}
	}
	if len(held) != 1 || held[slots[1].UUID] != "r" {
		t.Errorf("after reconcile: %v, want only %s held by project r", held, slots[1].UUID)
	}
}

// A project's workspace stays where it was created, whatever the
// configuration says later (and whatever a user lookup would say).
func TestWorkspaceStaysWhereItWasCreated(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	ws := workspaceOf(t, m, u, "p")
	os.WriteFile(filepath.Join(ws, "thesis.tex"), []byte("x"), 0o644)
	m.RetireContainer(context.Background(), u, "p", "test")
	m.cfg.WorkspaceRoot = filepath.Join(t.TempDir(), "elsewhere", "{user}")
	l, err = m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	var src string
	for _, mt := range rt.running[l.ContainerID()].Mounts {
		if mt.Target == "/workspace" {
			src = mt.Source
		}
	}
	if src == "" {
		t.Fatal("no /workspace mount")
	}
	if got := workspaceOf(t, m, u, "p"); got != ws {
		t.Errorf("workspace moved to %s", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(m.cfg.WorkspaceRoot), u.Name, "p")); err == nil {
		t.Error("a fresh, empty workspace was made under the new root")
	}
}

// A symlink above the workspace is refused, and nothing is written where
// it points (issue 10, item 10).
func TestSymlinkAboveWorkspaceIsRefused(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	root, _ := ExpandRoot(m.cfg.WorkspaceRoot, u.Name)
	target := filepath.Join(t.TempDir(), "rootowned")
	os.MkdirAll(target, 0o755)
	os.MkdirAll(filepath.Dir(root), 0o755)
	if err := os.Symlink(target, root); err != nil {
		t.Fatal(err)
	}
	_, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if !errors.Is(err, ErrNoWorkspace) || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("attach through a symlinked workspace root: %v", err)
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("the gateway wrote through the symlink: %v", entries)
	}
}

// Root's accounts never get containers, whatever the store says.
func TestUIDZeroIsRefused(t *testing.T) {
	rt := newMem()
	m, _ := newTestManager(t, rt, time.Hour)
	_, err := m.Attach(context.Background(), store.User{Name: "root", UID: 0, GID: 0}, "p", Default, io.Discard)
	if !errors.Is(err, errRootUser) {
		t.Fatalf("attach as uid 0: %v", err)
	}
	if _, launches, _ := rt.counts(); launches != 0 {
		t.Error("launched a container for uid 0")
	}
}

// The grace timers, in fake time (testing/synctest): a container whose
// last connection left during its launch (the launch could not be stopped
// in time and finished anyway) is still retired after the grace, not
// forgotten with its entry.
func TestLaunchFinishingAfterEveryoneLeftIsRetired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rt := newMem()
		rt.delay = 5 * time.Second // Launch ignores the context, as an engine call in flight would
		m, u := newTestManager(t, rt, 2*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := m.Attach(ctx, u, "p", Default, io.Discard)
			done <- err
		}()
		time.Sleep(time.Second)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("attach: %v", err)
		}
		time.Sleep(5 * time.Second) // the launch has finished: a container nobody holds
		synctest.Wait()
		if running, launches, _ := rt.counts(); running != 1 || launches != 1 {
			t.Fatalf("after the launch: %d running, %d launched", running, launches)
		}
		time.Sleep(10 * time.Second) // more than the grace, twice
		synctest.Wait()
		if running, _, _ := rt.counts(); running != 0 {
			t.Fatalf("the container outlived the grace with nobody on it: %d running", running)
		}
		// And a new login after that launches afresh.
		l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if running, launches, _ := rt.counts(); running != 0 || launches != 2 {
			t.Fatalf("second round: %d running, %d launched", running, launches)
		}
	})
}
