package session

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// memRuntime is an in-memory runtime for the manager's own logic
// (refcounts, grace, races between attach and retire); the real engine is
// exercised by the e2e suite.
type memRuntime struct {
	mu       sync.Mutex
	running  map[string]runtime.ContainerSpec
	launches int
	retires  int
	delay    time.Duration
	// images, once a build has run, holds the images by reference;
	// before that every image exists.
	images map[string]runtime.Image
	builds []string
	// untagged holds the images a build moved a tag away from, by ID;
	// removed lists the IDs RemoveUnused removed.
	untagged map[string]runtime.Image
	removed  []string
	// cachePrunes are the keep values PruneBuildCache was called with.
	cachePrunes []int64
	// afterList runs after List has made its answer, before it returns.
	afterList func()
}

func newMem() *memRuntime { return &memRuntime{running: map[string]runtime.ContainerSpec{}} }

func (r *memRuntime) Launch(_ context.Context, spec runtime.ContainerSpec) (string, error) {
	time.Sleep(r.delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.launches++
	id := fmt.Sprintf("c%d", r.launches)
	r.running[id] = spec
	return id, nil
}

func (r *memRuntime) Exec(context.Context, string, runtime.ExecSpec) (runtime.Process, error) {
	return nil, runtime.ErrNotRunning
}

func (r *memRuntime) Running(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.running[id]
	return ok, nil
}

func (r *memRuntime) Retire(_ context.Context, id string) error {
	time.Sleep(r.delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retires++
	delete(r.running, id)
	return nil
}

func (r *memRuntime) List(context.Context, map[string]string) ([]runtime.Container, error) {
	r.mu.Lock()
	var out []runtime.Container
	for id, s := range r.running {
		out = append(out, runtime.Container{ID: id, Name: s.Name, Labels: s.Labels, Running: true})
	}
	after := r.afterList
	r.mu.Unlock()
	if after != nil {
		after()
	}
	return out, nil
}

func (r *memRuntime) Dial(context.Context, string, string, string) (net.Conn, error) {
	return nil, runtime.ErrNotRunning
}

func (r *memRuntime) Listen(context.Context, string, string, string) (net.Listener, error) {
	return nil, runtime.ErrNotRunning
}

func (r *memRuntime) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := r.Image(ctx, ref)
	return img.ID, err
}

func (r *memRuntime) Image(_ context.Context, ref string) (runtime.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.images == nil {
		return runtime.Image{ID: "sha256:img"}, nil // every image exists
	}
	return r.images[ref], nil
}

func (r *memRuntime) RemoveImage(_ context.Context, ref string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.images, ref)
	return nil
}

// Build reads the Dockerfile out of the context, and fails the way the
// classic builder does when a line says FAIL.
func (r *memRuntime) Build(_ context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	time.Sleep(r.delay)
	df, err := dockerfileOf(spec.Context)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(out, "Step 1/2 : FROM base\n")
	if bytes.Contains(df, []byte("FAIL")) {
		fmt.Fprintf(out, "Step 2/2 : RUN FAIL\n")
		return "", errors.New("The command '/bin/sh -c FAIL' returned a non-zero code: 127")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.builds = append(r.builds, string(df))
	id := fmt.Sprintf("sha256:%d", len(r.builds))
	if r.images == nil {
		r.images = map[string]runtime.Image{}
	}
	if old, ok := r.images[spec.Ref]; ok {
		if r.untagged == nil {
			r.untagged = map[string]runtime.Image{}
		}
		r.untagged[old.ID] = old
	}
	r.images[spec.Ref] = runtime.Image{ID: id, Labels: labelsOf(df)}
	return id, nil
}

// labelsOf reads the LABEL line the gateway adds to the Dockerfile.
func labelsOf(df []byte) map[string]string {
	labels := map[string]string{}
	for _, line := range strings.Split(string(df), "\n") {
		if strings.HasPrefix(line, "LABEL ") {
			for _, m := range labelRE.FindAllStringSubmatch(line, -1) {
				labels[m[1]] = m[2]
			}
		}
	}
	return labels
}

var labelRE = regexp.MustCompile(`(\S+)="([^"]*)"`)

func (r *memRuntime) Images(_ context.Context, labels map[string]string) ([]runtime.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runtime.Image
	match := func(img runtime.Image) bool {
		for k, v := range labels {
			if img.Labels[k] != v {
				return false
			}
		}
		return true
	}
	for ref, img := range r.images {
		if match(img) {
			img.Tags = []string{ref}
			out = append(out, img)
		}
	}
	for _, img := range r.untagged {
		if match(img) {
			out = append(out, img)
		}
	}
	return out, nil
}

// RemoveUnused removes an untagged image no container was launched from.
func (r *memRuntime) RemoveUnused(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.untagged[id]; !ok {
		return false, nil
	}
	for _, c := range r.running {
		if c.Image == id {
			return false, nil
		}
	}
	delete(r.untagged, id)
	r.removed = append(r.removed, id)
	return true, nil
}

func (r *memRuntime) PruneBuildCache(_ context.Context, keep int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cachePrunes = append(r.cachePrunes, keep)
	return 0, nil
}

func (r *memRuntime) BuildCacheSize(context.Context) (int64, error) { return 0, nil }

// imageIDs lists the IDs of the images labelled for uid's project, tagged
// or not.
func (r *memRuntime) imageIDs(uid int, project string) []string {
	imgs, _ := r.Images(context.Background(), map[string]string{LabelUID: strconv.Itoa(uid), LabelProject: project})
	var ids []string
	for _, img := range imgs {
		ids = append(ids, img.ID)
	}
	sort.Strings(ids)
	return ids
}

func dockerfileOf(tarStream io.Reader) ([]byte, error) {
	tr := tar.NewReader(tarStream)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, err
		}
		if h.Name == "Dockerfile" {
			df, err := io.ReadAll(tr)
			io.Copy(io.Discard, tarStream)
			return df, err
		}
	}
}
func (r *memRuntime) ImageFiles(context.Context, string, ...string) (map[string][]byte, error) {
	return map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/root:/bin/bash\n")}, nil
}

func (r *memRuntime) counts() (running, launches, retires int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running), r.launches, r.retires
}

func newTestManager(t *testing.T, rt *memRuntime, grace time.Duration) (*Manager, store.User) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "ds01.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Workspaces are made and read as the user, which needs root.
	if os.Geteuid() != 0 {
		t.Skip("needs root: the manager acts on workspaces as their users")
	}
	u := store.User{Name: "ann", UID: 25001, GID: 25001}
	m := New(Config{
		WorkspaceRoot: filepath.Join(dir, "ws", "{user}"),
		BaseImage:     "base",
		RetireAfter:   grace,
		Instance:      "test",
		RunDir:        filepath.Join(dir, "run"),
	}, rt, rt, st, slog.New(slog.DiscardHandler))
	t.Cleanup(m.Close)
	return m, u
}

// workspaceOf is the host directory of the user's project.
func workspaceOf(t *testing.T, m *Manager, u store.User, project string) string {
	t.Helper()
	p, err := m.store.GetProject(context.Background(), u.Name, project)
	if err != nil {
		t.Fatal(err)
	}
	return p.Workspace
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentAttachesShareOneLaunch(t *testing.T) {
	rt := newMem()
	rt.delay = 20 * time.Millisecond
	m, u := newTestManager(t, rt, 50*time.Millisecond)
	var wg sync.WaitGroup
	leases := make([]*Lease, 20)
	for i := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
			if err != nil {
				t.Error(err)
				return
			}
			leases[i] = l
		}()
	}
	wg.Wait()
	if _, launches, _ := rt.counts(); launches != 1 {
		t.Fatalf("20 concurrent attaches launched %d containers", launches)
	}
	for _, l := range leases[1:] {
		l.Release()
	}
	time.Sleep(100 * time.Millisecond)
	if running, _, _ := rt.counts(); running != 1 {
		t.Fatal("container retired while a lease was still held")
	}
	leases[0].Release()
	waitFor(t, "retire after the last release", func() bool { r, _, _ := rt.counts(); return r == 0 })
}

func TestReattachWithinGraceReuses(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, 200*time.Millisecond)
	l, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	first := l.ContainerID()
	l.Release()
	l2, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l2.ContainerID() != first {
		t.Errorf("reattach within grace got %s, want %s", l2.ContainerID(), first)
	}
	time.Sleep(300 * time.Millisecond)
	if running, _, _ := rt.counts(); running != 1 {
		t.Error("the grace timer of a released lease retired a container that has a new lease")
	}
	l2.Release()
	waitFor(t, "retire", func() bool { r, _, _ := rt.counts(); return r == 0 })
}

// Attaches racing the grace expiry either join the old container before it
// is retired or get a fresh one; never a retired one, never two at once.
func TestAttachRacingRetire(t *testing.T) {
	rt := newMem()
	rt.delay = 2 * time.Millisecond
	m, u := newTestManager(t, rt, time.Millisecond)
	for i := 0; i < 50; i++ {
		l, err := m.Attach(context.Background(), u, "proj", Default, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := rt.Running(context.Background(), l.ContainerID()); !ok {
			t.Fatalf("round %d: lease on a retired container", i)
		}
		if running, _, _ := rt.counts(); running != 1 {
			t.Fatalf("round %d: %d containers for one project", i, running)
		}
		l.Release()
		time.Sleep(time.Duration(i%4) * time.Millisecond)
	}
	waitFor(t, "final retire", func() bool { r, _, _ := rt.counts(); return r == 0 })
}

func TestReconcileAdoptsThenRetires(t *testing.T) {
	rt := newMem()
	rt.running["orphan"] = runtime.ContainerSpec{Name: "ds01-ann.proj-abc", Labels: map[string]string{
		LabelUser: "ann", LabelUID: "25001", LabelProject: "proj", LabelInstance: "test"}}
	m, _ := newTestManager(t, rt, 50*time.Millisecond)
	if err := m.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the adopted orphan to retire", func() bool { r, _, _ := rt.counts(); return r == 0 })
}

// A container that vanished while the gateway was down takes its
// lifecycle state with it: the store keeps no rows for the dead.
func TestReconcileDropsLifecycleOfGoneContainers(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	ctx := context.Background()
	if err := m.store.PutContainer(ctx, store.Container{ID: "gone", Name: "ds01-ann.proj-abc", User: u.Name, Project: "proj", Image: "x", State: "running", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := m.store.SaveLifecycle(ctx, "gone", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.store.Lifecycle(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lifecycle state of a gone container: %v, want it deleted", err)
	}
}
