package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeTree writes a small tree with a name containing spaces and a nested
// directory under root.
func makeTree(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"", "sub dir", "sub dir/deeper", "empty"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeRandom(t, filepath.Join(root, "a.bin"), 300<<10)
	writeRandom(t, filepath.Join(root, "sub dir", "file with spaces.txt"), 1234)
	writeRandom(t, filepath.Join(root, "sub dir", "deeper", "z"), 0)
}

// treeSums maps each regular file under root (relative path) to its sha256
// and each directory to "dir".
func treeSums(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			m[rel] = "dir"
		case d.Type().IsRegular():
			m[rel] = sha256File(t, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, what, want, got string) {
	t.Helper()
	w, g := treeSums(t, want), treeSums(t, got)
	for p, v := range w {
		if g[p] != v {
			t.Errorf("%s: %q is %q, want %q", what, p, g[p], v)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: unexpected %q", what, p)
		}
	}
}

// ownedBy checks every entry under root belongs to u.
func ownedBy(t *testing.T, root string, u *user) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if uid, gid := fileOwner(t, p); uid != u.uid || gid != u.gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, uid, gid, u.uid, u.gid)
		}
		return nil
	})
}

var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func (g *gw) mustSCP(t *testing.T, u *user, dir string, args ...string) {
	t.Helper()
	r := runTool(t, timeoutShort, dir, nil, "scp", append(g.scpArgs(u.key), args...)...)
	if r.code != 0 {
		t.Fatalf("scp %s: %s", strings.Join(args, " "), r)
	}
}

func mtime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// testSCP runs the scp scenarios in SFTP mode (legacy false) or with -O.
// In legacy mode the remote path goes through the remote shell, so a
// remote path with spaces is quoted as users type it.
func testSCP(t *testing.T, legacy bool, u *user, g *gw, proj string) {
	var mode []string
	quote := func(s string) string { return s }
	if legacy {
		mode = []string{"-O"}
		quote = func(s string) string { return strings.ReplaceAll(s, " ", `\ `) }
	}
	scp := func(args ...string) { t.Helper(); g.mustSCP(t, u, t.TempDir(), append(mode, args...)...) }
	ws := g.workspace(u, proj)
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	makeTree(t, src)
	f := filepath.Join(dir, "f")
	writeRandom(t, f, 4096)

	// scp f proj@gw: lands in the workspace (the start directory).
	scp(f, remote(proj, ""))
	if sha256File(t, filepath.Join(ws, "f")) != sha256File(t, f) {
		t.Errorf("scp f %s: not in the workspace", remote(proj, ""))
	}

	// -r of a tree with spaces, then f into a subdirectory with a trailing /.
	scp("-r", src, remote(proj, "up"))
	sameTree(t, "scp -r upload", src, filepath.Join(ws, "up"))
	ownedBy(t, filepath.Join(ws, "up"), u)
	scp(f, remote(proj, "up/"))
	if sha256File(t, filepath.Join(ws, "up", "f")) != sha256File(t, f) {
		t.Errorf("scp f %s: not in the workspace's up/", remote(proj, "up/"))
	}
	if err := os.Remove(filepath.Join(ws, "up", "f")); err != nil {
		t.Fatal(err)
	}
	// An absolute container path works too; into a directory with a space.
	scp(f, remote(proj, quote("/workspace/up/sub dir/")))
	if !exists(filepath.Join(ws, "up", "sub dir", "f")) {
		t.Errorf("scp f to /workspace/up/sub dir/: not there")
	}
	os.Remove(filepath.Join(ws, "up", "sub dir", "f"))

	// -r back down.
	back := filepath.Join(dir, "back")
	scp("-r", remote(proj, "up"), back)
	sameTree(t, "scp -r download", src, back)

	// A single file with spaces in its remote path, downloaded.
	one := filepath.Join(dir, "one")
	scp(remote(proj, quote("up/sub dir/file with spaces.txt")), one)
	if sha256File(t, one) != sha256File(t, filepath.Join(src, "sub dir", "file with spaces.txt")) {
		t.Errorf("download of a path with spaces: wrong content")
	}

	// -p keeps mtime and mode both ways.
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(f, oldTime, oldTime); err != nil {
		t.Fatal(err)
	}
	scp("-p", f, remote(proj, "kept"))
	if m := mtime(t, filepath.Join(ws, "kept")); !m.Equal(oldTime) {
		t.Errorf("scp -p upload: mtime %s, want %s", m, oldTime)
	}
	if m := fileMode(t, filepath.Join(ws, "kept")).Perm(); m != 0o640 {
		t.Errorf("scp -p upload: mode %o, want 640", m)
	}
	ownedBy(t, filepath.Join(ws, "kept"), u)
	scp("-p", remote(proj, "kept"), filepath.Join(dir, "kept-back"))
	if m := mtime(t, filepath.Join(dir, "kept-back")); !m.Equal(oldTime) {
		t.Errorf("scp -p download: mtime %s, want %s", m, oldTime)
	}

	// A missing remote file fails cleanly.
	r := runTool(t, timeoutShort, dir, nil, "scp", append(g.scpArgs(u.key), append(mode, remote(proj, "no-such-file"), filepath.Join(dir, "x"))...)...)
	if r.code == 0 {
		t.Errorf("scp of a missing file succeeded: %s", r)
	}
	// Confinement holds for scp too.
	r = runTool(t, timeoutShort, dir, nil, "scp", append(g.scpArgs(u.key), append(mode, remote(proj, "/etc/passwd"), filepath.Join(dir, "passwd"))...)...)
	if r.code == 0 || exists(filepath.Join(dir, "passwd")) {
		t.Errorf("scp of /etc/passwd succeeded: %s", r)
	}
	r = runTool(t, timeoutShort, dir, nil, "scp", append(g.scpArgs(u.key), append(mode, remote(proj, "../../etc/passwd"), filepath.Join(dir, "passwd"))...)...)
	if r.code == 0 || exists(filepath.Join(dir, "passwd")) {
		t.Errorf("scp of ../../etc/passwd succeeded: %s", r)
	}

	if ids := containers(t, u.uid, proj); len(ids) != 0 {
		t.Errorf("scp left containers: %v", ids)
	}
}

// OpenSSH scp in its default (SFTP) mode.
func TestSCP(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "selma", 20241, 20241)
	testSCP(t, false, u, g, "scp-sftp")
}

// scp -O: the legacy protocol, `scp -t`/`scp -f` served by the gateway
// without a container.
func TestSCPLegacy(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "lars", 20251, 20251)
	const proj = "scp-legacy"
	testSCP(t, true, u, g, proj)

	// The double-quoted form users type for a directory with a space.
	dir := t.TempDir()
	f := filepath.Join(dir, "g")
	writeRandom(t, f, 100)
	g.mustSCP(t, u, dir, "-O", f, remote(proj, `"up/sub dir/"`))
	if !exists(filepath.Join(g.workspace(u, proj), "up", "sub dir", "g")) {
		t.Errorf(`scp -O g proj@gw:"up/sub dir/": not there`)
	}
	g.mustSCP(t, u, dir, "-O", "-r", remote(proj, `"up/sub dir"`), filepath.Join(dir, "got"))
	if !exists(filepath.Join(dir, "got", "g")) || !exists(filepath.Join(dir, "got", "file with spaces.txt")) {
		t.Errorf(`scp -O -r proj@gw:"up/sub dir" got: incomplete`)
	}
}
