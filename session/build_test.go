package session

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// newBuildManager returns a manager whose runtime starts with no images.
func newBuildManager(t *testing.T) (*Manager, *memRuntime, store.User) {
	t.Helper()
	rt := newMem()
	rt.images = map[string]runtime.Image{}
	m, u := newTestManager(t, rt, 0)
	return m, rt, u
}

func addSystem(names ...string) func([]byte) ([]byte, error) {
	return func(df []byte) ([]byte, error) {
		cur, _, err := image.Packages(df, image.System)
		if err != nil {
			return nil, err
		}
		var add []image.Package
		for _, n := range names {
			p, err := image.ParseApt(n)
			if err != nil {
				return nil, err
			}
			add = append(add, p)
		}
		return image.WithPackages(df, image.System, image.Merge(cur, add))
	}
}

func TestCreateThenUpdate(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	var out bytes.Buffer
	res, err := m.images.CreateImage(ctx, u, "p", ImageSpec{System: []image.Package{{Name: "jq", Spec: "jq"}}}, &out)
	if err != nil || !res.Built || !res.Changed {
		t.Fatalf("CreateImage = %+v, %v\n%s", res, err, out.String())
	}
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, &out); !errors.Is(err, ErrImageExists) {
		t.Errorf("second CreateImage: %v, want ErrImageExists", err)
	}
	if !strings.Contains(out.String(), "ds01: [1/2") {
		t.Errorf("no progress line per step:\n%s", out.String())
	}
	ws := workspaceOf(t, m, u, "p")
	df, _ := os.ReadFile(filepath.Join(ws, "Dockerfile"))
	if !bytes.Contains(df, []byte("'jq'")) || !strings.HasPrefix(rt.builds[0], string(df)) {
		t.Errorf("built Dockerfile is not the workspace's:\n%s", df)
	}
	// Nothing to change: no build.
	if _, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: addSystem("jq")}, &out); !errors.Is(err, ErrNoChange) {
		t.Errorf("no-op update: %v, want ErrNoChange", err)
	}
	if _, err := m.images.UpdateImage(ctx, u, "nope", Change{Rebuild: true}, &out); !errors.Is(err, ErrNoProject) {
		t.Errorf("update of a missing project: %v", err)
	}
}

func TestFailedBuildKeepsDockerfile(t *testing.T) {
	ctx := context.Background()
	m, _, u := newBuildManager(t)
	var out bytes.Buffer
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, &out); err != nil {
		t.Fatal(err)
	}
	ws := workspaceOf(t, m, u, "p")
	before, _ := os.ReadFile(filepath.Join(ws, "Dockerfile"))
	fail := func(df []byte) ([]byte, error) { return append(df, "RUN FAIL\n"...), nil }
	_, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: fail, Reason: "test"}, &out)
	var be *BuildError
	if !errors.As(err, &be) || be.Saved != "Dockerfile.failed" || !strings.HasPrefix(be.Step, "2/2 RUN FAIL") {
		t.Fatalf("failed build: %#v", err)
	}
	if !strings.Contains(be.Error(), "exit code 127") {
		t.Errorf("message: %s", be.Error())
	}
	after, _ := os.ReadFile(filepath.Join(ws, "Dockerfile"))
	if !bytes.Equal(before, after) {
		t.Error("a failed build replaced the Dockerfile")
	}
	if saved, _ := os.ReadFile(filepath.Join(ws, "Dockerfile.failed")); !bytes.Contains(saved, []byte("RUN FAIL")) {
		t.Error("the attempt was not saved")
	}
	bs, _ := m.images.Builds(ctx, u, "p", 0)
	if len(bs) != 2 || bs[0].Result != store.BuildFailed || bs[0].FailedStep == "" || bs[1].Result != store.BuildOK {
		t.Errorf("build history: %+v", bs)
	}
	info, _ := m.catalog.Project(ctx, u, "p")
	if info.ImageState != ImageFailed || info.ImageID == "" {
		t.Errorf("project after a failed build: %+v", info)
	}
	// A good build clears the failed attempt.
	if _, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: addSystem("jq")}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ws, "Dockerfile.failed")); err == nil {
		t.Error("Dockerfile.failed outlived a good build")
	}
	if bak, _ := os.ReadFile(filepath.Join(ws, "Dockerfile.bak")); !bytes.Equal(bak, before) {
		t.Error("Dockerfile.bak is not the previous version")
	}
}

// Concurrent changes are serialised: every one lands, each on top of the
// last, and the image is built from the final Dockerfile.
func TestConcurrentUpdatesSerialise(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	rt.delay = 5e6
	pkgs := []string{"jq", "curl", "git", "vim", "htop", "tree"}
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, len(pkgs))
	for i, p := range pkgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: addSystem(p)}, &outs[i]); err != nil {
				t.Errorf("update %s: %v", p, err)
			}
		}()
	}
	wg.Wait()
	df, _ := os.ReadFile(filepath.Join(workspaceOf(t, m, u, "p"), "Dockerfile"))
	got, _, _ := image.Packages(df, image.System)
	if len(got) != len(pkgs) {
		t.Errorf("final Dockerfile has %v, want all of %v", got, pkgs)
	}
	last := rt.builds[len(rt.builds)-1]
	if !strings.HasPrefix(last, string(df)) {
		t.Error("the last build is not of the final Dockerfile")
	}
	followed := 0
	for i := range outs {
		if strings.Contains(outs[i].String(), "another build of p is running") {
			followed++
		}
	}
	if followed == 0 {
		t.Error("no request followed another's build")
	}
}

func TestBaseRestriction(t *testing.T) {
	ctx := context.Background()
	m, _, u := newBuildManager(t)
	m.cfg.AllowedBases = []string{"base", "pytorch/pytorch:*"}
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{Base: "evil/miner:latest"}, &bytes.Buffer{}); !errors.Is(err, ErrBaseRefused) {
		t.Errorf("refused base: %v", err)
	}
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{Base: "pytorch/pytorch:2.3.0"}, &bytes.Buffer{}); err != nil {
		t.Errorf("allowed base: %v", err)
	}
	// A hand edit cannot get around it either.
	edit := func([]byte) ([]byte, error) { return []byte("FROM evil/miner\n"), nil }
	if _, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: edit}, &bytes.Buffer{}); !errors.Is(err, ErrBaseRefused) {
		t.Errorf("hand-edited base: %v", err)
	}
}

// container-retire ends the container and tells its leases why.
func TestRetireContainerNotifiesLeases(t *testing.T) {
	ctx := context.Background()
	rt := newMem()
	m, u := newTestManager(t, rt, 0)
	l, err := m.Attach(ctx, u, "p", Default, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := m.RetireContainer(ctx, u, "p", "retired by test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Retired():
	default:
		t.Fatal("the lease did not hear of the retirement")
	}
	if l.RetiredWhy() != "retired by test" {
		t.Errorf("why = %q", l.RetiredWhy())
	}
	if running, _, _ := rt.counts(); running != 0 {
		t.Errorf("%d containers still running", running)
	}
	if err := m.RetireContainer(ctx, u, "p", "again"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("second retire: %v", err)
	}
	other := store.User{Name: "bob", UID: u.UID + 1, GID: u.GID}
	if err := m.RetireContainer(ctx, other, "p", "x"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("another user's retire: %v", err)
	}
}

// A first login builds through UpdateImage while holding its entry; an
// image-update at the same time must not deadlock with it, and listings
// must not wait for either.
func TestLoginBuildAndUpdateTogether(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	rt.delay = 20e6
	done := make(chan error, 2)
	go func() {
		l, err := m.Attach(ctx, u, "p", Default, &bytes.Buffer{})
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	waitFor(t, "the login's build", func() bool { return m.images.Building(u, "p") })
	if _, err := m.catalog.Projects(ctx, u); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: addSystem("jq")}, &bytes.Buffer{})
		done <- err
	}()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	l, err := m.Attach(ctx, u, "p", Default, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if c, ok := m.container(u, "p"); !ok || c.ImageID == "" {
		t.Errorf("container after both: %+v %v", c, ok)
	}
}
