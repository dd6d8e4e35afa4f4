package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

const testUID, testGID = 54321, 54321

// spawnFixture lays out what a child running as testUID can reach: a copy
// of this test binary (the "gateway") and a workspace the user owns with
// a root-only file in it. t.TempDir's directories are private to root.
type spawnFixture struct {
	self, ws string
}

func newSpawnFixture(t *testing.T) spawnFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the child as another user")
	}
	base, err := os.MkdirTemp("", "ds01-transfer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// The user can reach neither the binary nor the workspace by path (a
	// 0700 parent, like a data_dir): the gateway runs itself through
	// /proc/self/exe and hands the workspace over as a descriptor.
	os.Chmod(base, 0o700)
	f := spawnFixture{self: "/proc/self/exe", ws: filepath.Join(base, "ws")}
	os.Mkdir(f.ws, 0o755)
	os.Chown(f.ws, testUID, testGID)
	os.WriteFile(filepath.Join(f.ws, "rootonly"), []byte("root secret"), 0o600)
	os.WriteFile(filepath.Join(f.ws, "shared"), []byte("for everyone"), 0o644)
	return f
}

func (f spawnFixture) spec(mode string, args ...string) Spec {
	return Spec{Self: f.self, Mode: mode, Mounts: []Mount{{Path: "/workspace", Dir: f.ws}},
		UID: testUID, GID: testGID, Args: args}
}

type spawnResult struct {
	code int
	st   Stats
	err  error
}

func TestSpawnSFTPAsUser(t *testing.T) {
	f := newSpawnFixture(t)
	fdsBefore := openFDs(t)
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	done := make(chan spawnResult, 1)
	var stderr bytes.Buffer
	go func() {
		code, st, err := Spawn(context.Background(), f.spec("sftp"), sr, sw, &stderr)
		sw.Close()
		done <- spawnResult{code, st, err}
	}()
	c, err := sftp.NewClientPipe(cr, cw)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Create("new.txt")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("made by the user"))
	w.Close()
	if err := c.Mkdir("d"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open("rootonly"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("open rootonly: %v, want permission denied", err)
	}
	if err := c.Chown("new.txt", 0, 0); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("chown to root: %v, want permission denied", err)
	}
	r, err := c.Open("shared")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "for everyone" {
		t.Errorf("shared = %q", b)
	}
	c.Close() // stdin EOF: the child must end by itself
	cw.Close()

	var res spawnResult
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Spawn did not return after stdin EOF")
	}
	if res.err != nil || res.code != 0 {
		t.Fatalf("code %d err %v stderr %q", res.code, res.err, stderr.String())
	}
	if res.st.BytesIn != 16 || res.st.BytesOut != 12 {
		t.Errorf("stats %+v", res.st)
	}
	for name, mode := range map[string]fs.FileMode{"new.txt": 0o644, "d": fs.ModeDir | 0o755} {
		fi, err := os.Stat(filepath.Join(f.ws, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != testUID || st.Gid != testGID || fi.Mode() != mode {
			t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", name, st.Uid, st.Gid, fi.Mode(), testUID, testGID, mode)
		}
	}
	cr.Close()
	checkNoLeaks(t, fdsBefore)
}

func TestSpawnSCPAsUser(t *testing.T) {
	f := newSpawnFixture(t)
	run := func(args ...string) *scpPeer {
		return startPeer(t, func(in io.Reader, out io.Writer) scpResult {
			code, st, err := Spawn(context.Background(), f.spec("scp", args...), in, out, io.Discard)
			return scpResult{st, code, err}
		})
	}
	p := run("-t", "--", "with space")
	p.ack()
	p.putFile(0o640, "ignored", []byte("scp upload"), 0)
	r := p.finish()
	if r.status != 0 || r.err != nil || r.st.BytesIn != 10 {
		t.Fatalf("upload: %+v", r)
	}
	fi, err := os.Stat(filepath.Join(f.ws, "with space"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != testUID || fi.Mode() != 0o640 {
		t.Errorf("owner %d mode %v", st.Uid, fi.Mode())
	}

	p = run("-f", "rootonly", "shared")
	tree, errs := p.receive()
	r = p.finish()
	if r.status != 1 || r.err != nil {
		t.Errorf("download: %+v", r)
	}
	if len(errs) != 1 || errs[0] != "scp: rootonly: Permission denied" {
		t.Errorf("errors %q", errs)
	}
	if tree["shared"].data != "for everyone" || len(tree) != 1 {
		t.Errorf("sent %v", tree)
	}
}

// A cancelled session kills the child at once, even with stdin open.
func TestSpawnCancel(t *testing.T) {
	f := newSpawnFixture(t)
	fdsBefore := openFDs(t)
	inR, inW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan spawnResult, 1)
	go func() {
		code, st, err := Spawn(ctx, f.spec("sftp"), inR, io.Discard, io.Discard)
		done <- spawnResult{code, st, err}
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("err %v, want canceled", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Spawn did not return after cancel")
	}
	inW.Close() // what the gateway's channel close does: ends the stdin copier
	checkNoLeaks(t, fdsBefore)
}

func TestSpawnRefuses(t *testing.T) {
	for _, spec := range []Spec{
		{Self: "/bin/true", Mode: "sftp", Mounts: []Mount{{Path: "/workspace", Dir: "/tmp"}}, UID: -1, GID: 0},
		{Self: "/bin/true", Mode: "sftp", Mounts: []Mount{{Path: "/workspace", Dir: "/nonexistent"}}, UID: 1000, GID: 1000},
		{Self: "/bin/true", Mode: "rsync", Mounts: []Mount{{Path: "/workspace", Dir: "/tmp"}}, UID: 1000, GID: 1000},
		{Self: "/bin/true", Mode: "sftp", UID: 1000, GID: 1000},
		{Mode: "sftp", Mounts: []Mount{{Path: "/workspace", Dir: "/tmp"}}, UID: 1000, GID: 1000},
	} {
		if _, _, err := Spawn(context.Background(), spec, strings.NewReader(""), io.Discard, io.Discard); err == nil {
			t.Errorf("%+v: started", spec)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc")
	}
	return len(fds)
}

// checkNoLeaks waits for Spawn's goroutines to end and checks that no
// file descriptor stayed open.
func checkNoLeaks(t *testing.T, fdsBefore int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		leaked := strings.Contains(stacks, "transfer.(*pipes)") || strings.Contains(stacks, "transfer.Spawn")
		fds := openFDs(t)
		if !leaked && fds <= fdsBefore {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: %d fds (before %d), goroutines:\n%s", fds, fdsBefore, stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// brokenWriter is a channel whose client has gone.
type brokenWriter struct{}

func (brokenWriter) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

// A client that stops reading mid-download must not leave the child
// blocked on a full pipe, nor Spawn waiting for it.
func TestSpawnClientGone(t *testing.T) {
	f := newSpawnFixture(t)
	os.WriteFile(filepath.Join(f.ws, "big"), make([]byte, 4<<20), 0o644)
	inR, inW := io.Pipe()
	defer inW.Close()
	done := make(chan spawnResult, 1)
	go func() {
		code, st, err := Spawn(context.Background(), f.spec("scp", "-f", "big"), inR, brokenWriter{}, io.Discard)
		done <- spawnResult{code, st, err}
	}()
	inW.Write([]byte{0, 0}) // start, and accept the file blindly
	select {
	case r := <-done:
		if r.err == nil && r.code == 0 {
			t.Errorf("download to a gone client succeeded: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Spawn hung on a client that went away")
	}
}

// The child refuses to serve with any of root's ids, whoever started it
// with them (a user registered as uid or gid 0): it writes nothing and
// says why.
func TestChildRefusesRoot(t *testing.T) {
	f := newSpawnFixture(t)
	for _, ids := range []struct{ uid, gid int }{{0, 0}, {testUID, 0}, {0, testGID}} {
		spec := f.spec("scp", "-t", "/workspace")
		spec.UID, spec.GID = ids.uid, ids.gid
		var stderr bytes.Buffer
		code, _, err := Spawn(context.Background(), spec, strings.NewReader("C0644 5 planted\nhello\x00"), io.Discard, &stderr)
		if err != nil || code == 0 || !strings.Contains(stderr.String(), "transfer: refusing to serve") {
			t.Errorf("uid %d gid %d: exit %d, err %v, stderr %q; want a refusal", ids.uid, ids.gid, code, err, stderr.String())
		}
		if _, err := os.Lstat(filepath.Join(f.ws, "planted")); err == nil {
			t.Fatalf("uid %d gid %d: the child wrote a file", ids.uid, ids.gid)
		}
	}
}
