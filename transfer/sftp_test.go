package transfer

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

func TestSFTPRoundTrip(t *testing.T) {
	f := newFixture(t)
	s := startSFTP(t, f.mounts())
	data := make([]byte, 8<<20+12345)
	rand.Read(data)

	w, err := s.c.Create("big.bin") // relative: lands in /workspace
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadFrom(bytes.NewReader(data)); err != nil { // pipelined writes
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(filepath.Join(f.ws, "big.bin"))
	if err != nil || sha256.Sum256(host) != sha256.Sum256(data) {
		t.Fatalf("host copy differs (err %v)", err)
	}

	r, err := s.c.Open("/workspace/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := r.WriteTo(&got); err != nil { // pipelined reads
		t.Fatal(err)
	}
	r.Close()
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(data) {
		t.Fatal("downloaded copy differs")
	}
	st, err := s.end(t)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	if st.BytesIn != int64(len(data)) || st.BytesOut != int64(len(data)) {
		t.Errorf("stats %+v, want %d each way", st, len(data))
	}
}

func TestSFTPConcurrentFiles(t *testing.T) {
	f := newFixture(t)
	s := startSFTP(t, f.mounts())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := string(rune('a'+i)) + ".bin"
			data := bytes.Repeat([]byte{byte(i)}, 1<<20)
			w, err := s.c.Create(name)
			if err != nil {
				t.Error(err)
				return
			}
			w.ReadFrom(bytes.NewReader(data))
			w.Close()
			got, err := os.ReadFile(filepath.Join(f.ws, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: wrong content (err %v)", name, err)
			}
		})
	}
	wg.Wait()
}

func TestSFTPStartDirectory(t *testing.T) {
	f := newFixture(t)
	s := startSFTP(t, f.mounts())
	for _, p := range []string{".", "", "sub/..", "/workspace"} {
		got, err := s.c.RealPath(p)
		if err != nil || got != "/workspace" {
			t.Errorf("realpath(%q) = %q, %v; want /workspace", p, got, err)
		}
	}
	if wd, err := s.c.Getwd(); err != nil || wd != "/workspace" {
		t.Errorf("getwd = %q, %v", wd, err)
	}
	// What `scp f host:sub/` does: a relative path under the start.
	if err := s.c.Mkdir("sub"); err != nil {
		t.Fatal(err)
	}
	w, err := s.c.Create("sub/f")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hi"))
	w.Close()
	if b, err := os.ReadFile(filepath.Join(f.ws, "sub", "f")); err != nil || string(b) != "hi" {
		t.Errorf("sub/f = %q, %v", b, err)
	}
}

func TestSFTPListRoot(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.ws, "a.txt"), []byte("a"), 0o640)
	s := startSFTP(t, f.mounts())
	for _, p := range []string{"/", "..", "/workspace/../..", "/.."} {
		fis, err := s.c.ReadDir(p)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		if len(fis) != 1 || fis[0].Name() != "workspace" || !fis[0].IsDir() {
			t.Errorf("readdir %s = %v, want only workspace", p, names(fis))
		}
	}
	fi, err := s.c.Stat("/")
	if err != nil || !fi.IsDir() {
		t.Errorf("stat / = %v, %v", fi, err)
	}
	fis, err := s.c.ReadDir("/workspace")
	if err != nil || len(fis) != 1 || fis[0].Name() != "a.txt" {
		t.Fatalf("readdir /workspace = %v, %v", names(fis), err)
	}
	// ls -ln needs the real owner; ls -l the permission bits.
	st := fis[0].Sys().(*sftp.FileStat)
	if st.UID != uint32(os.Getuid()) || st.GID != uint32(os.Getgid()) || fis[0].Mode().Perm() != 0o640 {
		t.Errorf("a.txt: uid %d gid %d mode %v", st.UID, st.GID, fis[0].Mode())
	}
	if _, err := s.c.Stat("/etc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat /etc: %v, want not exist", err)
	}
}

func names(fis []fs.FileInfo) []string {
	var n []string
	for _, fi := range fis {
		n = append(n, fi.Name())
	}
	sort.Strings(n)
	return n
}

func TestSFTPOps(t *testing.T) {
	f := newFixture(t)
	s := startSFTP(t, f.mounts())
	c := s.c
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	put := func(p, content string) {
		t.Helper()
		w, err := c.Create(p)
		must("create "+p, err)
		w.Write([]byte(content))
		must("close "+p, w.Close())
	}
	host := func(p string) string { return filepath.Join(f.ws, p) }

	must("mkdir", c.Mkdir("d"))
	put("d/a", "aaa")
	put("b", "bbb")

	// Plain rename refuses to replace; posix-rename replaces.
	if err := c.Rename("b", "d/a"); err == nil {
		t.Error("rename onto an existing file succeeded")
	}
	must("posix-rename", c.PosixRename("b", "d/a"))
	if b, _ := os.ReadFile(host("d/a")); string(b) != "bbb" {
		t.Errorf("d/a = %q after posix-rename", b)
	}
	must("rename", c.Rename("d/a", "c"))

	must("chmod", c.Chmod("c", 0o600))
	if fi, _ := os.Stat(host("c")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after chmod", fi.Mode())
	}
	mt := time.Unix(1_600_000_000, 0)
	must("chtimes", c.Chtimes("c", mt, mt))
	if fi, _ := os.Stat(host("c")); !fi.ModTime().Equal(mt) {
		t.Errorf("mtime %v after chtimes", fi.ModTime())
	}
	must("truncate", c.Truncate("c", 1))
	if b, _ := os.ReadFile(host("c")); string(b) != "b" {
		t.Errorf("c = %q after truncate", b)
	}
	// Chown to oneself is allowed (here we are root anyway: the kernel decides).
	must("chown", c.Chown("c", os.Getuid(), os.Getgid()))

	// reput: open without truncation, write at an offset.
	w, err := c.OpenFile("c", os.O_WRONLY)
	must("open for reput", err)
	_, err = w.WriteAt([]byte("XY"), 1)
	must("writeat", err)
	w.Close()
	// reget: read from an offset.
	r, err := c.Open("c")
	must("open for reget", err)
	buf := make([]byte, 8)
	n, _ := r.ReadAt(buf, 1)
	r.Close()
	if string(buf[:n]) != "XY" {
		t.Errorf("reget read %q", buf[:n])
	}
	// Append mode ignores offsets.
	w, err = c.OpenFile("c", os.O_WRONLY|os.O_APPEND)
	must("open append", err)
	w.Write([]byte("Z"))
	w.Close()
	if b, _ := os.ReadFile(host("c")); string(b) != "bXYZ" {
		t.Errorf("c = %q after append", b)
	}
	// Read and write on one handle.
	rw, err := c.OpenFile("c", os.O_RDWR)
	must("open rdwr", err)
	rw.WriteAt([]byte("q"), 0)
	n, _ = rw.ReadAt(buf, 0)
	rw.Close()
	if string(buf[:n]) != "qXYZ" {
		t.Errorf("rdwr read %q", buf[:n])
	}

	must("symlink", c.Symlink("c", "l"))
	if tgt, err := c.ReadLink("l"); err != nil || tgt != "c" {
		t.Errorf("readlink = %q, %v", tgt, err)
	}
	if fi, err := c.Lstat("l"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat l = %v, %v", fi, err)
	}
	if fi, err := c.Stat("l"); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("stat l = %v, %v", fi, err)
	}
	must("hardlink", c.Link("c", "h"))
	if a, b := statIno(t, host("c")), statIno(t, host("h")); a != b {
		t.Error("hardlink is not the same inode")
	}
	if _, err := c.StatVFS("/workspace"); err != nil {
		t.Errorf("statvfs: %v", err)
	}

	if err := c.RemoveDirectory("c"); err == nil {
		t.Error("rmdir of a file succeeded")
	}
	for _, p := range []string{"c", "h", "l"} {
		must("remove "+p, c.Remove(p))
	}
	must("rmdir", c.RemoveDirectory("d"))
	if _, err := c.Stat("d"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat d after rmdir: %v", err)
	}
	if _, err := c.Open("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("open missing: %v, want not exist", err)
	}
	if left, _ := os.ReadDir(f.ws); len(left) != 0 {
		t.Errorf("workspace not empty: %v", left)
	}
}

func statIno(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestSFTPMountPointsAreReadOnly(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.ws, "keep"), []byte("k"), 0o644)
	s := startSFTP(t, f.mounts())
	c := s.c
	wsMode := statMode(t, f.ws)
	attempts := map[string]func() error{
		"create in /":        func() error { _, err := c.Create("/x"); return err },
		"mkdir in /":         func() error { return c.Mkdir("/x") },
		"rmdir /workspace":   func() error { return c.RemoveDirectory("/workspace") },
		"remove /workspace":  func() error { return c.Remove("/workspace") },
		"rename /workspace":  func() error { return c.Rename("/workspace", "/workspace/y") },
		"rename onto mount":  func() error { return c.PosixRename("/workspace/keep", "/workspace") },
		"rename into /":      func() error { return c.Rename("/workspace/keep", "/keep") },
		"chmod /workspace":   func() error { return c.Chmod("/workspace", 0o777) },
		"chmod /":            func() error { return c.Chmod("/", 0o777) },
		"symlink in /":       func() error { return c.Symlink("workspace", "/w") },
		"open / for writing": func() error { _, err := c.OpenFile("/", os.O_WRONLY); return err },
	}
	for name, do := range attempts {
		if err := do(); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s: %v, want permission denied", name, err)
		}
	}
	if statMode(t, f.ws) != wsMode {
		t.Error("workspace mode changed")
	}
	if _, err := os.Stat(filepath.Join(f.ws, "keep")); err != nil {
		t.Error("keep is gone")
	}
}

func statMode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// An SFTP session that ends mid-transfer returns; the handle is closed.
func TestSFTPClientGone(t *testing.T) {
	f := newFixture(t)
	s := startSFTP(t, f.mounts())
	w, err := s.c.Create("partial")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	_, err = s.end(t)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("serve: %v", err)
	}
}

// pkg/sftp's client Remove falls back to rmdir, so ask the handler: SFTP
// remove must not remove a directory, nor rmdir a file.
func TestSFTPRemoveKinds(t *testing.T) {
	f := newFixture(t)
	os.Mkdir(filepath.Join(f.ws, "d"), 0o755)
	os.WriteFile(filepath.Join(f.ws, "f"), nil, 0o644)
	tr, err := openTree(f.mounts())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	h := &sftpHandlers{t: tr, book: &modeBook{}}
	if err := h.Filecmd(sftp.NewRequest("Remove", "/workspace/d")); err == nil {
		t.Error("remove of a directory succeeded")
	}
	if err := h.Filecmd(sftp.NewRequest("Rmdir", "/workspace/f")); err == nil {
		t.Error("rmdir of a file succeeded")
	}
}

// A FIFO in the workspace is refused, not waited on.
func TestSFTPFifo(t *testing.T) {
	f := newFixture(t)
	if err := syscall.Mkfifo(filepath.Join(f.ws, "fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	s := startSFTP(t, f.mounts())
	done := make(chan error, 1)
	go func() {
		_, err := s.c.Open("fifo")
		if err == nil {
			_, err = s.c.OpenFile("fifo", os.O_WRONLY)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("opened a FIFO")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("open of a FIFO hung")
	}
}
