package session

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// disk-usage counts each user's images, tagged or not, and workspace
// bytes; images of a removed user show under their old name.
func TestDiskUsage(t *testing.T) {
	ctx := context.Background()
	m, rt, u := newBuildManager(t)
	if err := m.store.AddUser(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.images.CreateImage(ctx, u, "p", ImageSpec{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(workspaceOf(t, m, u, "p"), "data"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	for ref, img := range rt.images {
		img.Size = 100 << 20
		rt.images[ref] = img
	}
	rt.untagged = map[string]runtime.Image{"sha256:gone": {ID: "sha256:gone", Size: 5 << 20, Labels: map[string]string{
		LabelInstance: "test", LabelUID: "26001", LabelUser: "zed", LabelProject: "q",
	}}}
	rt.mu.Unlock()
	rep, err := m.Disk().DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Users) != 2 {
		t.Fatalf("users = %+v", rep.Users)
	}
	ann, zed := rep.Users[0], rep.Users[1]
	if ann.User != u.Name || ann.Images != 1 || ann.ImageBytes != 100<<20 || ann.Workspaces != 1 || ann.WorkspaceBytes < 1<<20 || ann.Partial {
		t.Errorf("ann = %+v", ann)
	}
	if zed.User != "zed" || !zed.Removed || zed.Images != 1 || zed.ImageBytes != 5<<20 {
		t.Errorf("removed user's images = %+v", zed)
	}
}
