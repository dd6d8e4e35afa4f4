package workspace

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The alerts file is the user's: appended to as the user, and a symlink
// or FIFO planted there sends nothing elsewhere and holds no thread.
func TestAppendFileAsUser(t *testing.T) {
	d, ws, secret := openWS(t)
	for _, line := range []string{"one\n", "two\n"} {
		if err := d.AppendFile(".ds01-alerts", []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(ws, ".ds01-alerts")
	if b, err := os.ReadFile(p); err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("alerts = %q, %v", b, err)
	}
	if u, g := owner(t, p); u != uid || g != gid {
		t.Errorf("alerts owned by %d:%d, want the user's", u, g)
	}

	target := filepath.Join(secret, "shadow")
	os.Symlink(target, filepath.Join(ws, "evil"))
	if err := d.AppendFile("evil", []byte("x\n"), 0o644); err == nil {
		t.Error("append through a symlink out of the workspace succeeded")
	}
	if b, _ := os.ReadFile(target); string(b) != "root:secret\n" {
		t.Errorf("target changed: %q", b)
	}
	if err := unix.Mkfifo(filepath.Join(ws, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(ws, "fifo"), uid, gid)
	done := make(chan error, 1)
	go func() { done <- d.AppendFile("fifo", []byte("x\n"), 0o644) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("append to a FIFO succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("append to a FIFO blocked")
	}
}

func TestModTime(t *testing.T) {
	d, ws, _ := openWS(t)
	if mt, err := d.ModTime(".keep-alive"); err != nil || !mt.IsZero() {
		t.Fatalf("missing file: %v %v, want zero time", mt, err)
	}
	when := time.Now().Add(-time.Hour).Truncate(time.Second)
	p := filepath.Join(ws, ".keep-alive")
	os.WriteFile(p, nil, 0o644)
	os.Chtimes(p, when, when)
	if mt, err := d.ModTime(".keep-alive"); err != nil || !mt.Equal(when) {
		t.Fatalf("ModTime = %v %v, want %v", mt, err, when)
	}
}
