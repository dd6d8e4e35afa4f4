package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// fakeEngine holds containers, images (ID -> tags) and networks.
type fakeEngine struct {
	containers []runtime.Container
	images     map[string][]string
	labels     map[string]map[string]string
	networks   map[string]map[string]string
}

func (f *fakeEngine) List(_ context.Context, want map[string]string) ([]runtime.Container, error) {
	var out []runtime.Container
	for _, c := range f.containers {
		if has(c.Labels, want) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeEngine) Retire(_ context.Context, id string) error {
	f.containers = slices.DeleteFunc(f.containers, func(c runtime.Container) bool { return c.ID == id })
	return nil
}

func (f *fakeEngine) Images(_ context.Context, want map[string]string) ([]runtime.Image, error) {
	var out []runtime.Image
	for id, tags := range f.images {
		if has(f.labels[id], want) {
			out = append(out, runtime.Image{ID: id, Tags: tags, Labels: f.labels[id]})
		}
	}
	return out, nil
}

// RemoveImage untags ref, and removes the image if that was its last tag
// and no container uses it, as the engine does.
func (f *fakeEngine) RemoveImage(ctx context.Context, ref string) error {
	for id, tags := range f.images {
		if slices.Contains(tags, ref) {
			f.images[id] = slices.DeleteFunc(tags, func(t string) bool { return t == ref })
			f.RemoveUnused(ctx, id)
		}
	}
	return nil
}

func (f *fakeEngine) RemoveUnused(_ context.Context, id string) (bool, error) {
	if len(f.images[id]) > 0 {
		return false, nil
	}
	for _, c := range f.containers {
		if c.ImageID == id {
			return false, nil
		}
	}
	delete(f.images, id)
	return true, nil
}

func (f *fakeEngine) ImageID(_ context.Context, id string) (string, error) {
	if _, ok := f.images[id]; ok {
		return id, nil
	}
	return "", nil
}

func (f *fakeEngine) RemoveNetwork(_ context.Context, name string, want map[string]string) (bool, error) {
	l, ok := f.networks[name]
	if !ok {
		return false, nil
	}
	if !has(l, want) {
		return false, errors.New("not ours")
	}
	delete(f.networks, name)
	return true, nil
}

func has(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func purgeFixture(t *testing.T) (*purge, *fakeEngine, string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: workspaces belong to their users")
	}
	ctx := context.Background()
	st := openTestStore(t)
	if err := st.AddUser(ctx, store.User{Name: "ann", UID: 27401, GID: 27401}, nil); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	anchor := filepath.Join(root, "home")
	ws := filepath.Join(anchor, "ann", "workspace", "p")
	outside := filepath.Join(root, "precious")
	for _, d := range []string{ws, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ws, "thesis.tex"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(ws, "link"))
	if _, err := st.CreateProject(ctx, store.Project{User: "ann", Name: "p", Workspace: ws, WorkspaceAnchor: anchor}); err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{session.LabelInstance: "inst", session.LabelUID: "27401", session.LabelProject: "p"}
	eng := &fakeEngine{
		containers: []runtime.Container{{ID: "c1", Name: "ds01-ann.p-1", Labels: ours, ImageID: "sha256:cur", Running: true}},
		images: map[string][]string{
			"sha256:cur":   {"ds01-27401/p:latest", "backup/ann:kept"},
			"sha256:old":   nil,
			"sha256:other": {"ds01-27402/q:latest"},
		},
		labels: map[string]map[string]string{
			"sha256:cur":   ours,
			"sha256:old":   ours,
			"sha256:other": {session.LabelInstance: "inst", session.LabelUID: "27402", session.LabelProject: "q"},
		},
		networks: map[string]map[string]string{"ds01-u27401": ours, "ds01-u27402": {session.LabelInstance: "inst", session.LabelUID: "27402"}},
	}
	return &purge{st: st, eng: eng, instance: "inst", out: &bytes.Buffer{}}, eng, ws, outside
}

// A user whose container runs is not purged without --force: nothing
// changes, and the message says what to do.
func TestPurgeRefusesRunningUser(t *testing.T) {
	p, eng, _, _ := purgeFixture(t)
	err := p.run(context.Background(), "ann")
	if !errors.Is(err, errRunning) || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "(p)") {
		t.Fatalf("purge of a running user: %v", err)
	}
	if _, err := p.st.GetUser(context.Background(), "ann"); err != nil {
		t.Errorf("user removed anyway: %v", err)
	}
	if len(eng.containers) != 1 || len(eng.images) != 3 {
		t.Errorf("engine changed: %+v", eng)
	}
}

// --force stops the container; the user's images and network go, the
// other user's stay, a tag of another repository keeps its image, and the
// workspace stays unless asked.
func TestPurgeForce(t *testing.T) {
	ctx := context.Background()
	p, eng, ws, _ := purgeFixture(t)
	p.force = true
	if err := p.run(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.st.GetUser(ctx, "ann"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user still there: %v", err)
	}
	if len(eng.containers) != 0 {
		t.Errorf("containers left: %v", eng.containers)
	}
	if _, ok := eng.images["sha256:old"]; ok {
		t.Error("the old image stayed")
	}
	if tags := eng.images["sha256:cur"]; !slices.Equal(tags, []string{"backup/ann:kept"}) {
		t.Errorf("current image's tags = %v, want only the other repository's", tags)
	}
	if _, ok := eng.images["sha256:other"]; !ok {
		t.Error("another user's image went")
	}
	if _, ok := eng.networks["ds01-u27401"]; ok {
		t.Error("network stayed")
	}
	if _, ok := eng.networks["ds01-u27402"]; !ok {
		t.Error("another user's network went")
	}
	if _, err := os.Stat(filepath.Join(ws, "thesis.tex")); err != nil {
		t.Errorf("workspace touched without --purge-workspaces: %v", err)
	}
	evs, _ := p.st.ListEvents(ctx, store.EventFilter{User: "ann"})
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	for _, want := range []string{"user.remove", "container.retire", "image.remove"} {
		if !slices.Contains(types, want) {
			t.Errorf("events %v lack %s", types, want)
		}
	}
}

// --purge-workspaces deletes the workspace, not what a symlink in it
// points at.
func TestPurgeWorkspaces(t *testing.T) {
	p, _, ws, outside := purgeFixture(t)
	p.force, p.workspaces = true, true
	if err := p.run(context.Background(), "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ws); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("a file a symlink pointed at went: %v", err)
	}
}

func TestPurgeFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"ann", "--force"}, {"ann", "--purge-workspaces"}} {
		if err := userRemove(append(args, "--data-dir", dir)); err == nil || !strings.Contains(err.Error(), "go with --purge") {
			t.Errorf("user remove %v: %v", args, err)
		}
	}
}
