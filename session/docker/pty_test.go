package docker

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The terminal is opened by the session's own shell when it is a POSIX
// one: an image's /bin/sh may be anything.
func TestTTYShell(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"/bin/bash", "-l"}, "/bin/bash"},
		{[]string{"/usr/bin/zsh", "-c", "x"}, "/usr/bin/zsh"},
		{[]string{"/usr/bin/fish", "-l"}, "/bin/sh"},
		{[]string{"bash", "-l"}, "/bin/sh"}, // not a path: as the engine would resolve it, unknown
		{nil, "/bin/sh"},
	} {
		if got := ttyShell(tc.cmd); got != tc.want {
			t.Errorf("ttyShell(%q) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
}

// The container's pty multiplexer is looked up under its root without
// following any symlink: a user who could plant one (here dev -> the
// host's /dev) gets an error, not the host's ptmx.
func TestOpenPTMXRefusesSymlinks(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/dev", filepath.Join(root, "dev")); err != nil {
		t.Fatal(err)
	}
	if f, err := openPTMXAt(t, root); err == nil {
		f.Close()
		t.Fatal("opened dev/pts/ptmx through a symlink")
	}
	// A symlink deeper down, to a path that stays inside the root.
	root = t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev", "pts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../ptmx", filepath.Join(root, "dev", "pts", "ptmx")); err != nil {
		t.Fatal(err)
	}
	if f, err := openPTMXAt(t, root); err == nil {
		f.Close()
		t.Fatal("opened dev/pts/ptmx through a symlink")
	}
}

// A regular file, or anything that is not the multiplexer on devpts, is
// refused.
func TestOpenPTMXRefusesNonDevice(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "dev", "pts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dev", "pts", "ptmx"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if f, err := openPTMXAt(t, root); err == nil {
		f.Close()
		t.Fatal("opened a regular file as the pty multiplexer")
	}
}

// The host's own /dev/pts/ptmx passes, and gives a working pty.
func TestOpenPTMXHost(t *testing.T) {
	f, err := openPTMXAt(t, "/")
	if err != nil {
		t.Skipf("no devpts at /dev/pts here: %v", err)
	}
	defer f.Close()
	peer, n, err := newPty(f, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if n < 0 {
		t.Fatalf("pty number %d", n)
	}
	if err := setWinsize(f, 33, 111); err != nil {
		t.Fatal(err)
	}
	ws, err := unix.IoctlGetWinsize(int(peer.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Row != 33 || ws.Col != 111 {
		t.Fatalf("window size %+v, %v", ws, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(peer.Fd()), &st); err != nil || st.Mode&0o777 != 0o620 || st.Gid != ttyGID {
		t.Fatalf("pty mode %o gid %d, %v; want 620 and gid %d", st.Mode&0o777, st.Gid, err, ttyGID)
	}
}

func openPTMXAt(t *testing.T, root string) (*os.File, error) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	return openPTMXIn(fd)
}

func TestStatTTY(t *testing.T) {
	for stat, want := range map[string]int{
		"42 (bash) S 1 42 42 34816 42 4194560 ...": 34816,
		"42 (a) b) (c) S 1 42 42 34817 42 0":       34817,
		"42 (sleep) S 1 42 42 0 -1 4194560":        0,
		"garbage":                                  0,
	} {
		if got := statTTY(stat); got != want {
			t.Errorf("statTTY(%q) = %d, want %d", stat, got, want)
		}
	}
}
