package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// holderRuntime is a memRuntime with network holders; a launch that
// names a holder that is not there fails, as Docker's does.
type holderRuntime struct {
	*memRuntime
	holders int
	joins   []string // NetworkHolder of each launch
	fail    error    // the next Launch fails with it
	// gate, when set, holds each LaunchHolder until it is closed or
	// sent on, as an engine setting up a network does.
	gate        chan struct{}
	netsRemoved []string // "network uid" of each RemoveNetwork
}

func (r *holderRuntime) LaunchHolder(_ context.Context, spec runtime.HolderSpec) (string, error) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		<-gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holders++
	id := fmt.Sprintf("h%d", r.holders)
	r.running[id] = runtime.ContainerSpec{Name: spec.Name, Image: spec.Image, Hostname: spec.Hostname, Labels: spec.Labels, Network: spec.Network}
	return id, nil
}

func (r *holderRuntime) RemoveNetwork(_ context.Context, name string, labels map[string]string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.netsRemoved = append(r.netsRemoved, name+" "+labels[LabelUID])
	return true, nil
}

func (r *holderRuntime) Launch(ctx context.Context, spec runtime.ContainerSpec) (string, error) {
	r.mu.Lock()
	r.joins = append(r.joins, spec.NetworkHolder)
	_, ok := r.running[spec.NetworkHolder]
	fail := r.fail
	r.fail = nil
	r.mu.Unlock()
	if fail != nil {
		return "", fail
	}
	if spec.NetworkHolder != "" && !ok {
		return "", errors.New("no such container: " + spec.NetworkHolder)
	}
	return r.memRuntime.Launch(ctx, spec)
}

func (r *holderRuntime) lastJoin() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joins[len(r.joins)-1]
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newHolderManager(t *testing.T, linger time.Duration, max int) (*Manager, *holderRuntime, *fakeClock, store.User) {
	t.Helper()
	hr := &holderRuntime{memRuntime: newMem()}
	m, u := newTestManager(t, hr.memRuntime, time.Hour)
	m.rt = hr
	m.cfg.NetworkLinger, m.cfg.NetworkHoldersMax = linger, max
	m.holders = newNetHolders(m.deps)
	clock := &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	m.holders.now = clock.Now
	if err := m.store.AddUser(context.Background(), u, nil); err != nil {
		t.Fatal(err)
	}
	return m, hr, clock, u
}

// coldStart attaches to project (launching its container), then retires
// the container again, and returns the holder the launch joined.
func coldStart(t *testing.T, m *Manager, hr *holderRuntime, u store.User, project string) string {
	t.Helper()
	ctx := context.Background()
	l, err := m.Attach(ctx, u, project, Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	joined := hr.lastJoin()
	m.holders.wg.Wait() // the holder made in the background
	l.Release()
	if err := m.RetireContainer(ctx, u, project, "test"); err != nil {
		t.Fatal(err)
	}
	return joined
}

// The first cold start launches on the network and leaves a holder
// behind; the next one joins it; the holder is locked to its project.
func TestHolderJoinedOnNextColdStart(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	if got := coldStart(t, m, hr, u, "proj"); got != "" {
		t.Fatalf("first cold start joined %q: there was no holder", got)
	}
	h := hr.running["h1"]
	if h.Hostname != "proj" || h.Image != "base" || h.Labels[LabelRole] != RoleHolder ||
		h.Labels[LabelProject] != "proj" || h.Labels[LabelUID] != strconv.Itoa(u.UID) || h.Network != userNetwork(u) {
		t.Fatalf("holder spec %+v", h)
	}
	if got := coldStart(t, m, hr, u, "proj"); got != "h1" {
		t.Fatalf("second cold start joined %q, want h1", got)
	}
	if got := coldStart(t, m, hr, u, "other"); got != "" {
		t.Errorf("another project joined %q: holders are per project", got)
	}
	if hr.holders != 2 {
		t.Errorf("%d holders made, want one per project", hr.holders)
	}
}

// A holder that an admin removed makes the launch fall back to the
// network, once, and a new holder follows.
func TestHolderGoneFallsBack(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	coldStart(t, m, hr, u, "proj")
	hr.mu.Lock()
	delete(hr.running, "h1")
	hr.mu.Unlock()
	if got := coldStart(t, m, hr, u, "proj"); got != "" {
		t.Fatalf("fallback launch joined %q", got)
	}
	if len(hr.joins) != 3 || hr.joins[1] != "h1" {
		t.Fatalf("launches %q: want the join tried once, then the network", hr.joins)
	}
	if got := coldStart(t, m, hr, u, "proj"); got != "h2" {
		t.Errorf("joined %q, want the new holder h2", got)
	}
}

// A launch that fails for a reason of its own, while the holder runs,
// reports that failure: no second launch, and the holder stays.
func TestHolderKeptWhenLaunchFailsOtherwise(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	coldStart(t, m, hr, u, "proj")
	hr.mu.Lock()
	hr.fail = errors.New("image not found")
	hr.mu.Unlock()
	_, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "image not found") {
		t.Fatalf("attach: %v, want the launch's own error", err)
	}
	if len(hr.joins) != 2 || hr.joins[1] != "h1" {
		t.Fatalf("launches %q: want one, joined to h1", hr.joins)
	}
	if got := coldStart(t, m, hr, u, "proj"); got != "h1" {
		t.Errorf("joined %q, want the holder kept (h1)", got)
	}
}

// Holders go NetworkLinger after their project's last use (a running
// container is a use), in the watch loop.
func TestHolderLinger(t *testing.T) {
	m, hr, clock, u := newHolderManager(t, time.Hour, 10)
	ctx := context.Background()
	coldStart(t, m, hr, u, "idle")
	l, err := m.Attach(ctx, u, "busy", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	m.holders.wg.Wait()
	clock.add(59 * time.Minute)
	m.holders.sweep(ctx, m.busyKeys())
	if _, ok := hr.running["h1"]; !ok {
		t.Fatal("holder removed before its linger")
	}
	clock.add(2 * time.Minute)
	m.holders.sweep(ctx, m.busyKeys())
	if _, ok := hr.running["h1"]; ok {
		t.Error("holder of the idle project still there after its linger")
	}
	if _, ok := hr.running["h2"]; !ok {
		t.Error("holder of a running project removed")
	}
}

// At the cap the least recently used holder of an idle project makes
// room; when every holder's project runs, no holder is made.
func TestHolderCap(t *testing.T) {
	m, hr, clock, u := newHolderManager(t, time.Hour, 2)
	ctx := context.Background()
	coldStart(t, m, hr, u, "a") // h1
	clock.add(time.Minute)
	coldStart(t, m, hr, u, "b") // h2
	clock.add(time.Minute)
	coldStart(t, m, hr, u, "a") // joins h1: now b's is the oldest
	clock.add(time.Minute)
	coldStart(t, m, hr, u, "c") // h3 replaces h2
	if _, ok := hr.running["h2"]; ok {
		t.Error("the least recently used holder stayed")
	}
	if _, ok := hr.running["h1"]; !ok {
		t.Error("a recently used holder went")
	}
	// Both holders' projects run: a third project gets none.
	la, _ := m.Attach(ctx, u, "a", Default, io.Discard)
	lc, _ := m.Attach(ctx, u, "c", Default, io.Discard)
	defer la.Release()
	defer lc.Release()
	l, err := m.Attach(ctx, u, "d", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	m.holders.wg.Wait()
	if hr.holders != 3 {
		t.Errorf("%d holders made; want none beyond the cap while all are in use", hr.holders)
	}
}

// network_linger 0: no holder is made, and a restart removes those left.
func TestHoldersOff(t *testing.T) {
	m, hr, _, u := newHolderManager(t, 0, 10)
	hr.running["old"] = runtime.ContainerSpec{Labels: map[string]string{
		LabelUser: u.Name, LabelUID: strconv.Itoa(u.UID), LabelProject: "proj", LabelInstance: "test", LabelRole: RoleHolder}}
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := hr.running["old"]; ok {
		t.Error("holder kept with holders off")
	}
	coldStart(t, m, hr, u, "proj")
	if hr.holders != 0 || hr.lastJoin() != "" {
		t.Errorf("holders off, yet %d made, last join %q", hr.holders, hr.lastJoin())
	}
}

// A restart adopts its holders, keeping their last use, and removes
// duplicates and those whose user or project is gone.
func TestReconcileAdoptsHolders(t *testing.T) {
	m, hr, clock, u := newHolderManager(t, time.Hour, 10)
	ctx := context.Background()
	coldStart(t, m, hr, u, "proj")    // the project exists; h1
	m.holders = newNetHolders(m.deps) // a new gateway process
	m.holders.now = clock.Now
	labels := func(user string, uid int, project string) map[string]string {
		return map[string]string{LabelUser: user, LabelUID: strconv.Itoa(uid), LabelProject: project, LabelInstance: "test",
			LabelRole: RoleHolder, LabelCreated: clock.Now().Format(time.RFC3339)}
	}
	hr.mu.Lock()
	hr.running["dup"] = runtime.ContainerSpec{Labels: labels(u.Name, u.UID, "proj")}
	hr.running["nouser"] = runtime.ContainerSpec{Labels: labels("bob", 25002, "proj")}
	hr.running["noproject"] = runtime.ContainerSpec{Labels: labels(u.Name, u.UID, "gone")}
	hr.mu.Unlock()
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, id := range []string{"h1", "dup", "nouser", "noproject"} {
		if _, ok := hr.running[id]; ok {
			left++
		}
	}
	if left != 1 {
		t.Fatalf("%d holders left after reconcile, want the one of proj", left)
	}
	joined := coldStart(t, m, hr, u, "proj")
	if joined != "h1" && joined != "dup" {
		t.Errorf("after a restart the cold start joined %q, want the adopted holder", joined)
	}
	if hr.holders != 1 {
		t.Errorf("a restart made %d holders in all, want the adopted one only", hr.holders)
	}
	// Its linger runs from its last use (now, the retire), not from the restart.
	clock.add(61 * time.Minute)
	m.holders.sweep(ctx, m.busyKeys())
	if _, ok := hr.running[joined]; ok {
		t.Error("adopted holder outlived its linger")
	}
}

// The early start (a verified key, before the session asks) joins the
// project's holder too.
func TestEarlyStartJoinsHolder(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	coldStart(t, m, hr, u, "proj")
	h := m.Prepare(u, "proj", Default)
	waitFor(t, "the early launch", func() bool {
		hr.mu.Lock()
		defer hr.mu.Unlock()
		return len(hr.joins) == 2
	})
	if got := hr.lastJoin(); got != "h1" {
		t.Errorf("early start joined %q, want h1", got)
	}
	h.Abandon() // retires what it launched, at once
	waitFor(t, "the early container's retire", func() bool { r, _, _ := hr.counts(); return r == 1 })
	m.holders.wg.Wait()
}

// A new project's first login builds its image, and its holder is made
// during the build: the first cold start joins it, waiting for it if the
// build ended first.
func TestHolderMadeDuringTheBuild(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	hr.images = map[string]runtime.Image{} // no image yet: the login builds
	gate := make(chan struct{})
	hr.gate = gate
	attached := make(chan error, 1)
	go func() {
		l, err := m.Attach(context.Background(), u, "fresh", Default, io.Discard)
		if err == nil {
			l.Release()
		}
		attached <- err
	}()
	waitFor(t, "the build", func() bool { hr.mu.Lock(); defer hr.mu.Unlock(); return len(hr.builds) == 1 })
	select {
	case err := <-attached:
		t.Fatalf("the launch did not wait for the holder under way: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(gate)
	if err := <-attached; err != nil {
		t.Fatal(err)
	}
	if got := hr.lastJoin(); got != "h1" {
		t.Errorf("the first cold start joined %q, want the holder made during the build", got)
	}
	m.holders.wg.Wait()
	if hr.holders != 1 {
		t.Errorf("%d holders made, want 1", hr.holders)
	}
}

// A launch waits for a holder under way no longer than holderJoinWait:
// an engine stuck on it does not hold the login.
func TestHolderJoinWaitIsBounded(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	gate := make(chan struct{})
	hr.gate = gate
	m.holders.ensure(u, "proj", m.busyKeys)
	start := time.Now()
	if got := m.holders.join(context.Background(), key{u.UID, "proj"}); got != "" {
		t.Errorf("joined %q while the holder was not made", got)
	}
	if d := time.Since(start); d < holderJoinWait || d > holderJoinWait+2*time.Second {
		t.Errorf("join waited %v, want about %v", d, holderJoinWait)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := m.holders.join(ctx, key{u.UID, "proj"}); got != "" {
		t.Errorf("a cancelled join got %q", got)
	}
	close(gate)
	m.holders.wg.Wait()
	if got := m.holders.join(context.Background(), key{u.UID, "proj"}); got != "h1" {
		t.Errorf("after the holder was made, join got %q", got)
	}
}

// At start (a host reboot took every holder) the projects used within
// the linger get theirs back, the most recent first, within the cap and
// keeping their last use; older, removed and other projects get none.
func TestHoldersWarmedAtStart(t *testing.T) {
	m, hr, clock, u := newHolderManager(t, 24*time.Hour, 10)
	ctx := context.Background()
	for _, p := range []string{"old", "mid", "recent", "newest"} {
		coldStart(t, m, hr, u, p)
	}
	// The store's uses: old two days ago, mid three hours ago, recent two,
	// newest one, and a project the store no longer has, just now.
	back := func(p string, d time.Duration) {
		rows, err := m.store.ListContainers(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Project == p {
				r.CreatedAt, r.RetiredAt = clock.Now().Add(-d-time.Minute), clock.Now().Add(-d)
				if err := m.store.PutContainer(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := m.store.PutContainer(ctx, store.Container{ID: "ghost1", Name: "g", User: u.Name, Project: "ghost", State: store.StateRetired,
		CreatedAt: clock.Now(), RetiredAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	back("old", 48*time.Hour)
	back("mid", 3*time.Hour)
	back("recent", 2*time.Hour)
	back("newest", time.Hour)
	// reboot removes every holder and starts a new gateway process with
	// the cap max; it returns the projects warm made holders for.
	reboot := func(max int) []string {
		hr.mu.Lock()
		for id, c := range hr.running {
			if c.Labels[LabelRole] == RoleHolder {
				delete(hr.running, id)
			}
		}
		hr.mu.Unlock()
		m.cfg.NetworkHoldersMax = max
		m.holders = newNetHolders(m.deps)
		m.holders.now = clock.Now
		m.holders.warm(ctx, m.holders.lastUses(ctx), nil)
		hr.mu.Lock()
		defer hr.mu.Unlock()
		var projects []string
		for _, c := range hr.running {
			if c.Labels[LabelRole] == RoleHolder {
				projects = append(projects, c.Labels[LabelProject])
			}
		}
		slices.Sort(projects)
		return projects
	}
	if got := reboot(10); !slices.Equal(got, []string{"mid", "newest", "recent"}) {
		t.Errorf("warm made holders for %v, want the three used within the linger", got)
	}
	if got := reboot(2); !slices.Equal(got, []string{"newest", "recent"}) {
		t.Fatalf("warm with a cap of 2 made holders for %v, want the two most recent", got)
	}
	// Each lingers from its project's last use, not from the start.
	clock.add(22*time.Hour + 30*time.Minute)
	m.holders.sweep(ctx, m.busyKeys())
	if m.holders.byKey[key{u.UID, "recent"}] != nil || m.holders.byKey[key{u.UID, "newest"}] == nil {
		t.Errorf("22.5 h later: recent's holder should be gone, newest's kept")
	}
}

// A user removed (user remove --purge, another process) while their
// holder was being made: the gateway removes that holder and the network
// its launch re-created, and keeps no record of it.
func TestHolderForRemovedUserIsDropped(t *testing.T) {
	m, hr, _, u := newHolderManager(t, time.Hour, 10)
	ctx := context.Background()
	gate := make(chan struct{})
	hr.gate = gate
	m.holders.ensure(u, "proj", m.busyKeys)
	if err := m.store.RemoveUser(ctx, u.Name); err != nil {
		t.Fatal(err)
	}
	close(gate)
	m.holders.wg.Wait()
	if _, ok := hr.running["h1"]; ok {
		t.Error("the removed user's holder runs")
	}
	if m.holders.byKey[key{u.UID, "proj"}] != nil {
		t.Error("the gateway keeps the removed user's holder")
	}
	if want := fmt.Sprintf("%s %d", userNetwork(u), u.UID); len(hr.netsRemoved) != 1 || hr.netsRemoved[0] != want {
		t.Errorf("networks removed %v, want [%s]", hr.netsRemoved, want)
	}
}
