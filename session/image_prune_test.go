package session

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Three rebuilds with no container leave the project one image: each
// previous one goes as soon as its successor is tagged.
func TestRebuildsLeaveOneImage(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := m.images.UpdateImage(ctx, u, "p", Change{Rebuild: true}, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := rt.ImageID(ctx, image.Ref(u.UID, "p"))
	waitFor(t, "only the current image", func() bool { return slices.Equal(rt.imageIDs(u.UID, "p"), []string{cur}) })
	waitFor(t, "3 image.remove events", func() bool {
		evs, _ := m.store.ListEvents(ctx, store.EventFilter{User: u.Name, Type: "image.remove"})
		return len(evs) == 3
	})
}

// A container running on the first image keeps it through rebuilds (the
// images in between go); retiring the container removes it.
func TestRunningContainerKeepsItsImage(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	l, err := m.Attach(ctx, u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := rt.ImageID(ctx, image.Ref(u.UID, "p"))
	for i := 0; i < 3; i++ {
		if _, err := m.images.UpdateImage(ctx, u, "p", Change{Rebuild: true}, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := rt.ImageID(ctx, image.Ref(u.UID, "p"))
	want := []string{first, cur}
	slices.Sort(want)
	waitFor(t, "the first and the current image", func() bool { return slices.Equal(rt.imageIDs(u.UID, "p"), want) })
	if err := m.RetireContainer(ctx, u, "p", "test"); err != nil {
		t.Fatal(err)
	}
	l.Release()
	waitFor(t, "the first image to go", func() bool { return slices.Equal(rt.imageIDs(u.UID, "p"), []string{cur}) })
}

// Only images of this gateway's instance, with the user's uid and the
// project, and no tag, are ever removed.
func TestPruneLeavesOthersImages(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	first, _ := rt.ImageID(ctx, image.Ref(u.UID, "p"))
	foreign := map[string]runtime.Image{
		"sha256:other-instance": {ID: "sha256:other-instance", Labels: map[string]string{LabelInstance: "other", LabelUID: "25001", LabelProject: "p"}},
		"sha256:other-project":  {ID: "sha256:other-project", Labels: map[string]string{LabelInstance: "test", LabelUID: "25001", LabelProject: "q"}},
		"sha256:unlabelled":     {ID: "sha256:unlabelled"},
	}
	rt.mu.Lock()
	if rt.untagged == nil {
		rt.untagged = map[string]runtime.Image{}
	}
	for id, img := range foreign {
		rt.untagged[id] = img
	}
	rt.mu.Unlock()
	if _, err := m.images.UpdateImage(ctx, u, "p", Change{Rebuild: true}, io.Discard); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the prune after the build", func() bool { return !slices.Contains(rt.imageIDs(u.UID, "p"), first) })
	m.images.startupPrune(ctx)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for id := range foreign {
		if _, ok := rt.untagged[id]; !ok && id != "sha256:other-project" {
			t.Errorf("%s was removed", id)
		}
	}
	// The other project of the same user is this gateway's: its unused
	// old image goes at start.
	if _, ok := rt.untagged["sha256:other-project"]; ok {
		t.Errorf("the user's other project's unused old image was kept")
	}
}

// build_cache_max prunes the build cache after each build; 0 never does.
func TestBuildCacheMax(t *testing.T) {
	ctx := context.Background()
	for _, limit := range []int64{0, 10 << 30} {
		m, rt, u := newBuildManager(t)
		m.cfg.BuildCacheMax = limit
		if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, io.Discard); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the prune", func() bool { return !m.images.cachePruning.Load() })
		rt.mu.Lock()
		got := slices.Clone(rt.cachePrunes)
		rt.mu.Unlock()
		want := []int64{limit}
		if limit == 0 {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Errorf("build_cache_max %d: prunes %v, want %v", limit, got, want)
		}
	}
}
