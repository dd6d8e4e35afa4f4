package workspace

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const uid, gid = 25001, 25001

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the gateway acts for users as root")
	}
}

// tree makes <tmp>/anchor (root's, 0755) and returns it with a root-only
// directory elsewhere that stands in for /etc.
func tree(t *testing.T) (anchor, secret string) {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	anchor = filepath.Join(dir, "anchor")
	secret = filepath.Join(dir, "etc")
	for _, d := range []string{anchor, secret} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(secret, "shadow"), []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return anchor, secret
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

func TestOpenCreatesOwnedDirs(t *testing.T) {
	anchor, _ := tree(t)
	ws := filepath.Join(anchor, "alice", "workspace", "p")
	d, err := Open(anchor, ws, Owner{uid, gid}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range []string{filepath.Join(anchor, "alice"), filepath.Join(anchor, "alice", "workspace"), ws} {
		if u, g := owner(t, p); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, u, g, uid, gid)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o750 {
			t.Errorf("%s mode %v, want 0750", p, st.Mode().Perm())
		}
	}
	if u, _ := owner(t, anchor); u != 0 {
		t.Errorf("anchor changed owner to %d", u)
	}
	if _, err := Open(anchor, filepath.Join(anchor, "bob", "p"), Owner{uid, gid}, false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open of a missing workspace without create: %v, want ErrNotExist", err)
	}
	if _, err := Open(anchor, "/etc", Owner{uid, gid}, false); err == nil {
		t.Error("a workspace outside the anchor was opened")
	}
	if _, err := Open(anchor, ws, Owner{0, 0}, false); err == nil {
		t.Error("opened a workspace for uid 0")
	}
}

// The user owns every directory below the anchor and may turn any of them
// into a symlink: the gateway must neither write through it nor read from
// it (issue 10, item 10: ~/workspace -> a root-owned tree).
func TestOpenRefusesSymlinksAboveWorkspace(t *testing.T) {
	anchor, secret := tree(t)
	home := filepath.Join(anchor, "alice")
	if err := os.Mkdir(home, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, uid, gid)
	if err := os.Symlink(secret, filepath.Join(home, "workspace")); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{filepath.Join(home, "workspace", "p"), filepath.Join(home, "workspace")} {
		_, err := Open(anchor, ws, Owner{uid, gid}, true)
		if !errors.Is(err, ErrSymlink) {
			t.Errorf("Open(%s): %v, want ErrSymlink", ws, err)
		}
	}
	if _, err := os.Stat(filepath.Join(secret, "p")); err == nil {
		t.Error("a directory was created through the symlink in the root-owned tree")
	}
	// The workspace itself a symlink to another user's workspace.
	os.Remove(filepath.Join(home, "workspace"))
	os.Mkdir(filepath.Join(home, "workspace"), 0o750)
	other := filepath.Join(anchor, "bob", "workspace", "p")
	os.MkdirAll(other, 0o750)
	os.Symlink(other, filepath.Join(home, "workspace", "p"))
	if _, err := Open(anchor, filepath.Join(home, "workspace", "p"), Owner{uid, gid}, true); !errors.Is(err, ErrSymlink) {
		t.Errorf("a workspace that is a symlink: %v, want ErrSymlink", err)
	}
}

func openWS(t *testing.T) (*Dir, string, string) {
	t.Helper()
	anchor, secret := tree(t)
	ws := filepath.Join(anchor, "alice", "p")
	d, err := Open(anchor, ws, Owner{uid, gid}, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, ws, secret
}

// A FIFO where the gateway expects a requirements file or a Dockerfile must
// not hold a gateway thread (issue 10, item 7).
func TestReadFileRefusesFIFOWithoutBlocking(t *testing.T) {
	d, ws, _ := openWS(t)
	if err := unix.Mkfifo(filepath.Join(ws, "req.fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.ReadFile("req.fifo", 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Fatalf("read of a FIFO: %v, want ErrNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	if _, err := d.ReadFile(".", 1<<20); !errors.Is(err, ErrNotRegular) {
		t.Errorf("read of a directory: %v, want ErrNotRegular", err)
	}
}

// Reads run as the user: a root-only file the user linked into the
// workspace, or a symlink out of it, gives nothing.
func TestReadFileIsTheUsersAccess(t *testing.T) {
	d, ws, secret := openWS(t)
	if err := os.Link(filepath.Join(secret, "shadow"), filepath.Join(ws, "linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("linked", 1<<20); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("read of a root-only file linked into the workspace: %v, want permission denied", err)
	}
	os.Symlink(filepath.Join(secret, "shadow"), filepath.Join(ws, "escape"))
	if data, err := d.ReadFile("escape", 1<<20); err == nil {
		t.Errorf("read through a symlink out of the workspace: %q", data)
	}
	os.WriteFile(filepath.Join(ws, "Dockerfile"), []byte("FROM x\n"), 0o644)
	if data, err := d.ReadFile("Dockerfile", 1<<20); err != nil || string(data) != "FROM x\n" {
		t.Errorf("read Dockerfile: %q, %v", data, err)
	}
	os.WriteFile(filepath.Join(ws, "big"), make([]byte, 100), 0o644)
	var tl TooLarge
	if _, err := d.ReadFile("big", 99); !errors.As(err, &tl) {
		t.Errorf("read over the limit: %v, want TooLarge", err)
	}
	// The gateway's own thread kept root's access.
	if _, err := os.ReadFile(filepath.Join(secret, "shadow")); err != nil {
		t.Errorf("root lost access after acting as the user: %v", err)
	}
}

func TestWriteFileAsUser(t *testing.T) {
	d, ws, secret := openWS(t)
	target := filepath.Join(secret, "owned")
	os.Symlink(target, filepath.Join(ws, "Dockerfile"))
	if err := d.WriteFile("Dockerfile", []byte("FROM y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("the write followed the symlink")
	}
	p := filepath.Join(ws, "Dockerfile")
	if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 {
		t.Fatalf("Dockerfile: %v %v", st, err)
	}
	if u, g := owner(t, p); u != uid || g != gid {
		t.Errorf("written file owned by %d:%d, want the user's", u, g)
	}
	if err := d.CreateFile("Dockerfile", []byte("x"), 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateFile over an existing file: %v, want ErrExist", err)
	}
	if err := d.Remove("Dockerfile"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("Dockerfile"); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
	// A directory the user cannot write stays unwritten.
	os.Mkdir(filepath.Join(ws, "ro"), 0o755) // root's
	if err := d.WriteFile("ro/x", []byte("x"), 0o644); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("write into root's directory: %v, want permission denied", err)
	}
}

// Many goroutines acting as different users at once, while others use
// root's access: credentials never leak between threads.
func TestCredentialsStayOnTheirThread(t *testing.T) {
	d, _, secret := openWS(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := d.WriteFile("f", []byte{byte(i)}, 0o644); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := os.ReadFile(filepath.Join(secret, "shadow")); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBindTo(t *testing.T) {
	d, ws, _ := openWS(t)
	os.WriteFile(filepath.Join(ws, "data"), []byte("keep"), 0o644)
	target := filepath.Join(t.TempDir(), "ws")
	os.Mkdir(target, 0o700)
	if err := d.BindTo(target); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "data")); err != nil || string(b) != "keep" {
		t.Fatalf("through the bind mount: %q, %v", b, err)
	}
	if err := Unbind(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount point left behind: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "data")); err != nil || string(b) != "keep" {
		t.Errorf("workspace data after unbind: %q, %v", b, err)
	}
}
