package workspace

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Usage counts what is in the workspace, once per hard link, and nothing
// a symlink points at outside it.
func TestUsage(t *testing.T) {
	d, dir, _ := openWS(t)
	outside := t.TempDir()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "data"), big[:256<<10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "sub", "data"), filepath.Join(dir, "again")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "sub"), 0); err != nil {
		t.Fatal(err)
	}
	u := d.Usage(context.Background())
	if u.Bytes < 256<<10 || u.Bytes >= 1<<20 || u.Files != 1 || u.Partial {
		t.Errorf("Usage = %+v, want the 256 KiB file once, not the 1 MiB outside", u)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if u := d.Usage(ctx); !u.Partial {
		t.Errorf("Usage with a cancelled context = %+v, want partial", u)
	}
}

// RemoveAll removes the tree, not what a symlink in it points at.
func TestRemoveAllFollowsNoSymlink(t *testing.T) {
	d, dir, secret := openWS(t)
	if err := os.MkdirAll(filepath.Join(dir, "proj", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "proj", "sub", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll("proj"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "proj")); !os.IsNotExist(err) {
		t.Errorf("proj still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(secret, "shadow")); err != nil {
		t.Errorf("the symlink's target went too: %v", err)
	}
}
