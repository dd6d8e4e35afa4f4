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

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// gateBuilder is a builder whose builds run until the test releases them or
// their context ends; it records how each ended.
type gateBuilder struct {
	*memRuntime
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	ended   []error // context.Cause of each build that was cancelled, nil for a released one
	specs   []runtime.BuildSpec
}

func newGate(rt *memRuntime) *gateBuilder {
	return &gateBuilder{memRuntime: rt, started: make(chan struct{}, 10), release: make(chan struct{})}
}

func (g *gateBuilder) Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	if _, err := dockerfileOf(spec.Context); err != nil {
		return "", err
	}
	g.mu.Lock()
	g.specs = append(g.specs, spec)
	g.mu.Unlock()
	fmt.Fprintf(out, "Step 1/1 : FROM base\n")
	g.started <- struct{}{}
	select {
	case <-g.release:
		g.mu.Lock()
		g.ended = append(g.ended, nil)
		g.mu.Unlock()
		g.memRuntime.mu.Lock()
		defer g.memRuntime.mu.Unlock()
		g.images[spec.Ref] = runtime.Image{ID: "sha256:gated"}
		return "sha256:gated", nil
	case <-ctx.Done():
		g.mu.Lock()
		g.ended = append(g.ended, context.Cause(ctx))
		g.mu.Unlock()
		return "", ctx.Err()
	}
}

func (g *gateBuilder) endings() []error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]error(nil), g.ended...)
}

func gatedManager(t *testing.T) (*Manager, *gateBuilder, store.User) {
	t.Helper()
	m, rt, u := newBuildManager(t)
	g := newGate(rt)
	m.builder = g
	if _, err := m.workspaces.Ensure(context.Background(), u, "p"); err != nil {
		t.Fatal(err)
	}
	return m, g, u
}

// waiting is how many callers wait for the project's running build.
func (im *Images) waitingFor(u store.User, project string) int {
	im.mu.Lock()
	var bc *broadcast
	if s := im.builds[key{u.UID, project}]; s != nil {
		bc = s.cur
	}
	im.mu.Unlock()
	if bc == nil {
		return -1
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	return bc.waiting
}

// A build that others follow outlives the user who started it: when that
// user leaves, the followers see it through instead of all failing.
func TestBuildOutlivesItsStarter(t *testing.T) {
	m, g, u := gatedManager(t)
	ownerCtx, leave := context.WithCancel(context.Background())
	ownerDone := make(chan error, 1)
	go func() {
		_, err := m.images.UpdateImage(ownerCtx, u, "p", Change{Rebuild: true}, io.Discard)
		ownerDone <- err
	}()
	<-g.started
	var followerOut bytes.Buffer
	followerDone := make(chan error, 1)
	go func() {
		_, err := m.images.UpdateImage(context.Background(), u, "p", Change{IfMissing: true}, &followerOut)
		followerDone <- err
	}()
	waitFor(t, "the follower", func() bool { return m.images.waitingFor(u, "p") == 2 })
	leave()
	waitFor(t, "the starter to leave", func() bool { return m.images.waitingFor(u, "p") == 1 })
	close(g.release)
	if err := <-followerDone; err != nil {
		t.Fatalf("follower: %v\n%s", err, followerOut.String())
	}
	<-ownerDone
	if e := g.endings(); len(e) != 1 || e[0] != nil {
		t.Errorf("builds ended %v, want one that ran to its end", e)
	}
	if !strings.Contains(followerOut.String(), "following it") {
		t.Errorf("follower output: %s", followerOut.String())
	}
}

// A build nobody waits for any more is cancelled: its lone caller left
// (a disconnect, or ^C in the ds01 shell), or every follower did too.
func TestBuildCancelledWhenEveryoneLeaves(t *testing.T) {
	for _, followers := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d followers", followers), func(t *testing.T) {
			m, g, u := gatedManager(t)
			ctx, leave := context.WithCancel(context.Background())
			done := make(chan error, followers+1)
			go func() {
				_, err := m.images.UpdateImage(ctx, u, "p", Change{Rebuild: true}, io.Discard)
				done <- err
			}()
			<-g.started
			for range followers {
				go func() {
					_, err := m.images.UpdateImage(ctx, u, "p", Change{IfMissing: true}, io.Discard)
					done <- err
				}()
			}
			waitFor(t, "the followers", func() bool { return m.images.waitingFor(u, "p") == followers+1 })
			leave()
			var be *BuildError
			for range followers + 1 {
				if err := <-done; !errors.Is(err, context.Canceled) && !errors.As(err, &be) {
					t.Errorf("a caller got %v", err)
				}
			}
			if e := g.endings(); len(e) != 1 || !errors.Is(e[0], errNobodyWaits) {
				t.Fatalf("builds ended %v, want one cancelled because nobody waits", e)
			}
			if be == nil || !strings.Contains(be.Error(), "cancelled: everyone waiting for it has gone") {
				t.Errorf("the starter was told %v", be)
			}
			bs, _ := m.images.Builds(context.Background(), u, "p", 0)
			if len(bs) != 1 || bs[0].Result != store.BuildFailed {
				t.Errorf("history: %+v", bs)
			}
		})
	}
}

// A Dockerfile the user may not build is refused before anything reaches
// the engine or the store, with the line that is wrong.
func TestUpdateImageRefusesBeforeBuilding(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	before := len(rt.builds)
	for df, want := range map[string]string{
		"FROM base\nADD http://127.0.0.1:9100/metrics /m\n": "line 2: not allowed: ADD",
		"FROM ds01-99999/secret\n":                          "another user's image",
		"FROM base\nLABEL ds01.gpu.uuids=GPU-1\n":           "ds01.* labels belong to the gateway",
		"FROM base\n#" + strings.Repeat("x", 70<<10):        "at most 64 KiB",
		"RUN true\n": "no FROM line",
	} {
		edit := func([]byte) ([]byte, error) { return []byte(df), nil }
		_, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: edit}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: %v, want %q", df, err, want)
		}
	}
	if _, err := m.images.CreateImage(ctx, u, "q", ImageSpec{Base: "ds01-99999/secret"}, io.Discard); !errors.Is(err, ErrBaseRefused) {
		t.Errorf("--base of another user's image: %v", err)
	}
	if len(rt.builds) != before {
		t.Error("a refused Dockerfile was built")
	}
	if bs, _ := m.images.Builds(ctx, u, "p", 0); len(bs) != 1 {
		t.Errorf("refused Dockerfiles reached the store: %d builds", len(bs))
	}
}

// A workspace Dockerfile over the cap is refused with a clear error.
func TestOversizedWorkspaceDockerfile(t *testing.T) {
	ctx := context.Background()
	m, _, u := newBuildManager(t)
	ws, err := m.workspaces.Ensure(ctx, u, "p")
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
	big := "FROM base\n#" + strings.Repeat("x", 65<<10) + "\n"
	os.WriteFile(filepath.Join(ws.Path(), "Dockerfile"), []byte(big), 0o644)
	_, err = m.images.UpdateImage(ctx, u, "p", Change{Rebuild: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "64 KiB") {
		t.Errorf("oversized Dockerfile: %v", err)
	}
}

// baseBuilder shows the build's bases to CheckBase as an engine would.
type baseBuilder struct {
	*memRuntime
	labels   map[string]map[string]string
	triggers map[string][]string
}

func (b *baseBuilder) Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	for _, base := range spec.Bases {
		if err := spec.CheckBase(base, b.labels[base], b.triggers[base]); err != nil {
			io.Copy(io.Discard, spec.Context)
			return "", err
		}
	}
	return b.memRuntime.Build(ctx, spec, out)
}

// A base image's ONBUILD triggers run in the user's build, and its labels
// land on the user's image: both get the rules the user's own lines get.
func TestBaseImagesAreVetted(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	own := fmt.Sprintf("ds01-%d/other", u.UID)
	bb := &baseBuilder{memRuntime: rt,
		labels: map[string]map[string]string{
			"labelled": {"ds01.gpu.uuids": "GPU-1"},
			own:        {"ds01.user": u.Name, "ds01.instance": "x"},
		},
		triggers: map[string][]string{
			"fetcher": {"ADD http://127.0.0.1:9100/metrics /m"},
			"reader":  {"COPY --from=ds01-99999/secret / /s"},
			"fine":    {"RUN make"},
		},
	}
	m.builder = bb
	if _, err := m.workspaces.Ensure(ctx, u, "p"); err != nil {
		t.Fatal(err)
	}
	for base, want := range map[string]string{
		"fetcher":  "base image fetcher: ONBUILD \"ADD http://127.0.0.1:9100/metrics /m\": not allowed",
		"reader":   "another user's image",
		"labelled": "carries the label ds01.gpu.uuids",
		"fine":     "",
		own:        "",
	} {
		edit := func([]byte) ([]byte, error) { return []byte("FROM " + base + "\n"), nil }
		_, err := m.images.UpdateImage(ctx, u, "p", Change{Edit: edit, Rebuild: true}, io.Discard)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("FROM %s: %v, want %q", base, err, want)
		}
	}
}

// The build output shows the gateway's LABEL step without its values: the
// instance id helps forge what reconciliation trusts.
func TestProgressHidesGatewayLabels(t *testing.T) {
	df := withLabels([]byte("FROM base\n"), [][2]string{{LabelUser, "ann"}, {LabelInstance, "secret-instance"}})
	var last string
	for _, l := range strings.Split(strings.TrimSpace(string(df)), "\n") {
		last = l
	}
	var out bytes.Buffer
	p := &progress{w: &out}
	fmt.Fprintf(p, "Step 2/2 : %s\n", last)
	if strings.Contains(out.String(), "secret-instance") || !strings.Contains(out.String(), "[2/2") {
		t.Errorf("progress shows %q", out.String())
	}
	if strings.Contains(p.step, "secret-instance") {
		t.Errorf("the recorded step shows %q", p.step)
	}
	// A user's own LABEL lines are shown as they are.
	out.Reset()
	fmt.Fprintf(p, "Step 1/2 : LABEL maintainer=me\n")
	if !strings.Contains(out.String(), "LABEL maintainer=me") {
		t.Errorf("progress shows %q", out.String())
	}
}

func TestBuildErrorKeepsTheReason(t *testing.T) {
	be := &BuildError{Step: "2/3 RUN x", Err: errors.New("build x: The command '/bin/sh -c x' returned a non-zero code: 2 (a step reached the limit of 64 processes for your builds: pids_limit)")}
	want := "build failed at step 2/3 RUN x: the command returned exit code 2 (a step reached the limit of 64 processes for your builds: pids_limit)"
	if be.Error() != want {
		t.Errorf("got  %s\nwant %s", be.Error(), want)
	}
}

// Builds run on the user's own network and cgroup, with the user's limits.
func TestBuildSpecIsolatesTheUser(t *testing.T) {
	m, g, u := gatedManager(t)
	m.cfg.Limits = runtime.Limits{PidsLimit: 64, Memory: 1 << 30}
	close(g.release)
	if _, err := m.images.UpdateImage(context.Background(), u, "p", Change{Rebuild: true}, io.Discard); err != nil {
		t.Fatal(err)
	}
	s := g.specs[0]
	if s.Network != userNetwork(u) || s.Group != fmt.Sprintf("u%d", u.UID) || s.Limits.PidsLimit != 64 || len(s.Bases) != 1 || s.Bases[0] != "base" || s.CheckBase == nil {
		t.Errorf("build spec = %+v", s)
	}
}
