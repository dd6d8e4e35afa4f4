package transfer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// plantLinks puts the classic escape symlinks in the workspace.
func plantLinks(t *testing.T, f fixture) {
	t.Helper()
	links := map[string]string{
		"toroot":   f.sys,                                  // absolute, the stand-in for /
		"toetc":    filepath.Join(f.sys, "etc"),            // absolute, the stand-in for /etc
		"tosib":    f.outside,                              // absolute, a sibling dir
		"up":       "../outside",                           // relative, out through ..
		"upup":     "../sys",                               // relative, out to the stand-in /
		"filelink": filepath.Join(f.outside, "secret.txt"), // absolute, a file
		"rellink":  "../outside/secret.txt",                // relative, a file
		"deeplink": "sub/../../outside",                    // .. hidden after a real dir
	}
	os.Mkdir(filepath.Join(f.ws, "sub"), 0o755)
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(f.ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(f.ws, "mine"), []byte("mine"), 0o644)
}

// snapshot records everything outside the workspace a test could touch.
type snapshot map[string]string

func snap(t *testing.T, f fixture) snapshot {
	t.Helper()
	s := snapshot{}
	walk := func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := os.Lstat(p)
		b, _ := os.ReadFile(p)
		s[p] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(b)
		return nil
	}
	filepath.WalkDir(f.outside, walk)
	filepath.WalkDir(f.sys, walk)
	return s
}

func (s snapshot) diff(t *testing.T, now snapshot) {
	t.Helper()
	var keys []string
	for k := range s {
		keys = append(keys, k)
	}
	for k := range now {
		if _, ok := s[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if s[k] != now[k] {
			t.Errorf("outside changed: %s: %q -> %q", k, s[k], now[k])
		}
	}
}

func TestSFTPEscapes(t *testing.T) {
	f := newFixture(t)
	plantLinks(t, f)
	before := snap(t, f)
	etcBefore, _ := os.Stat("/etc/hostname")
	s := startSFTP(t, f.mounts())
	c := s.c
	mt := time.Unix(1234567890, 0)

	readable := []string{
		"toroot/etc/passwd", "toetc/passwd", "tosib/secret.txt", "up/secret.txt",
		"upup/etc/passwd", "filelink", "rellink", "deeplink/secret.txt",
		"/etc/passwd", "../outside/secret.txt", "/workspace/../outside/secret.txt",
		"../../../../etc/passwd", "/workspace/../../../etc/passwd", "sub/../../outside/secret.txt",
	}
	for _, p := range readable {
		if r, err := c.Open(p); err == nil {
			r.Close()
			t.Errorf("read %s: opened", p)
		}
		if fi, err := c.Stat(p); err == nil {
			t.Errorf("stat %s: %v", p, fi.Mode())
		}
	}
	for _, p := range []string{"toroot", "toetc", "tosib", "up", "upup", "deeplink", "/etc", "toroot/etc"} {
		if fis, err := c.ReadDir(p); err == nil {
			t.Errorf("list %s: %v", p, names(fis))
		}
	}

	attempts := map[string]func() error{
		"create via tosib":    func() error { _, err := c.Create("tosib/new"); return err },
		"create via up":       func() error { _, err := c.Create("up/new"); return err },
		"create via deeplink": func() error { _, err := c.Create("deeplink/new"); return err },
		"truncate filelink":   func() error { _, err := c.Create("filelink"); return err },
		"write rellink": func() error {
			w, err := c.OpenFile("rellink", os.O_WRONLY)
			if err == nil {
				_, err = w.Write([]byte("pwned"))
				w.Close()
			}
			return err
		},
		"create /tmp":         func() error { _, err := c.Create("/tmp/new"); return err },
		"mkdir via tosib":     func() error { return c.Mkdir("tosib/d") },
		"mkdir via toroot":    func() error { return c.Mkdir("toroot/tmp/d") },
		"rename from outside": func() error { return c.Rename("tosib/secret.txt", "stolen") },
		"rename via up":       func() error { return c.Rename("up/secret.txt", "stolen") },
		"rename to outside":   func() error { return c.Rename("mine", "tosib/mine") },
		"posix-rename over":   func() error { return c.PosixRename("mine", "up/secret.txt") },
		"rename dir out":      func() error { return c.Rename("sub", "tosib/sub") },
		"chmod filelink":      func() error { return c.Chmod("filelink", 0o777) },
		"chmod rellink":       func() error { return c.Chmod("rellink", 0o777) },
		"chmod via tosib":     func() error { return c.Chmod("tosib/secret.txt", 0o777) },
		"chmod via toetc":     func() error { return c.Chmod("toetc/hostname", 0o777) },
		"chown filelink":      func() error { return c.Chown("filelink", 1, 1) },
		"chtimes filelink":    func() error { return c.Chtimes("filelink", mt, mt) },
		"chtimes via up":      func() error { return c.Chtimes("up/secret.txt", mt, mt) },
		"truncate via path":   func() error { return c.Truncate("filelink", 0) },
		"truncate via tosib":  func() error { return c.Truncate("tosib/secret.txt", 0) },
		"remove via tosib":    func() error { return c.Remove("tosib/secret.txt") },
		"remove via up":       func() error { return c.Remove("up/secret.txt") },
		"rmdir via tosib":     func() error { return c.RemoveDirectory("tosib/dir") },
		"remove via ..":       func() error { return c.Remove("/workspace/../outside/secret.txt") },
		"hardlink outside":    func() error { return c.Link("tosib/secret.txt", "hl") },
		"hardlink to outside": func() error { return c.Link("mine", "tosib/hl") },
		"symlink outside":     func() error { return c.Symlink("x", "tosib/l") },
	}
	for name, do := range attempts {
		if err := do(); err == nil {
			t.Errorf("%s: succeeded", name)
		} else if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want permission denied or not found", name, err)
		}
	}

	// Escapes through links are refused as permission denied, the
	// answer OpenSSH users know.
	if _, err := c.Open("toetc/passwd"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("open toetc/passwd: %v, want permission denied", err)
	}

	// Creating a link to anywhere is fine: it is only text, and
	// following it goes through os.Root.
	target := filepath.Join(f.sys, "etc", "passwd")
	if err := c.Symlink(target, "p"); err != nil {
		t.Fatal(err)
	}
	if tgt, err := c.ReadLink("p"); err != nil || tgt != target {
		t.Errorf("readlink p = %q, %v", tgt, err)
	}
	if _, err := c.Open("p"); err == nil {
		t.Error("opened a link to the stand-in /etc/passwd")
	}
	if w, err := c.OpenFile("p", os.O_WRONLY|os.O_TRUNC); err == nil {
		w.Close()
		t.Error("opened a link to the stand-in /etc/passwd for writing")
	}
	// Renaming and removing the links themselves stays inside.
	if err := c.Rename("filelink", "moved"); err != nil {
		t.Errorf("rename the link itself: %v", err)
	}
	if err := c.Remove("moved"); err != nil {
		t.Errorf("remove the link itself: %v", err)
	}
	// ".." above the workspace clamps at "/", which lists only workspace.
	if fis, err := c.ReadDir("../../.."); err != nil || len(fis) != 1 || fis[0].Name() != "workspace" {
		t.Errorf("list ../../.. = %v, %v", names(fis), err)
	}

	before.diff(t, snap(t, f))
	if etcNow, _ := os.Stat("/etc/hostname"); etcBefore != nil && etcNow.Mode() != etcBefore.Mode() {
		t.Error("/etc/hostname mode changed")
	}
	if b, _ := os.ReadFile(filepath.Join(f.ws, "mine")); string(b) != "mine" {
		t.Errorf("mine = %q", b)
	}
}
