package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func (g *gw) rsync(t *testing.T, u *user, args ...string) sshResult {
	t.Helper()
	return runTool(t, timeoutShort, t.TempDir(), nil, "rsync", append([]string{"-e", g.rsyncSSH(u.key)}, args...)...)
}

func (g *gw) mustRsync(t *testing.T, u *user, args ...string) string {
	t.Helper()
	r := g.rsync(t, u, args...)
	if r.code != 0 {
		t.Fatalf("rsync %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// transferContainers lists the user's transfer containers (any project).
func transferContainers(t *testing.T, uid int) []string {
	t.Helper()
	return fields(docker(t, "ps", "-a", "-q", "--filter", fmt.Sprintf("label=ds01.uid=%d", uid), "--filter", "label=ds01.role=transfer"))
}

func waitNoTransferContainers(t *testing.T, uid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(transferContainers(t, uid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("uid %d: transfer containers still there after %s: %v", uid, timeout, transferContainers(t, uid))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rsync -e ssh to and from the workspace: -a, partial re-runs, --delete.
func TestRsync(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "rosa", 20261, 20261)
	const proj = "sync"
	ws := g.workspace(u, proj)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	writeRandom(t, filepath.Join(src, "gone"), 10)
	if err := os.Chtimes(filepath.Join(src, "a.bin"), oldTime, oldTime); err != nil {
		t.Fatal(err)
	}

	g.mustRsync(t, u, "-a", src+"/", remote(proj, "dst/"))
	sameTree(t, "rsync -a upload", src, filepath.Join(ws, "dst"))
	ownedBy(t, filepath.Join(ws, "dst"), u)
	if m := mtime(t, filepath.Join(ws, "dst", "a.bin")); !m.Equal(oldTime) {
		t.Errorf("rsync -a: mtime %s, want %s", m, oldTime)
	}
	waitContainers(t, u.uid, proj, 0, 10*time.Second)
	waitNoTransferContainers(t, u.uid, 10*time.Second)

	// Change one file: the second run sends only it.
	writeRandom(t, filepath.Join(src, "sub dir", "file with spaces.txt"), 2000)
	out := g.mustRsync(t, u, "-a", "--stats", src+"/", remote(proj, "dst/"))
	if !strings.Contains(out, "Number of regular files transferred: 1\n") {
		t.Errorf("re-run after one change: want 1 file transferred, got:\n%s", out)
	}
	sameTree(t, "rsync re-run", src, filepath.Join(ws, "dst"))

	// --delete removes what was deleted locally.
	if err := os.Remove(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	g.mustRsync(t, u, "-a", "--delete", src+"/", remote(proj, "dst/"))
	if exists(filepath.Join(ws, "dst", "gone")) {
		t.Errorf("rsync --delete left dst/gone")
	}
	sameTree(t, "rsync --delete", src, filepath.Join(ws, "dst"))

	// And back from the workspace.
	back := filepath.Join(dir, "back")
	g.mustRsync(t, u, "-a", remote(proj, "dst/"), back+"/")
	sameTree(t, "rsync download", src, back)
	if m := mtime(t, filepath.Join(back, "a.bin")); !m.Equal(oldTime) {
		t.Errorf("rsync -a download: mtime %s, want %s", m, oldTime)
	}
	// A "~/" path is the workspace too.
	g.mustRsync(t, u, "-a", filepath.Join(src, "a.bin"), remote(proj, "~/tilde.bin"))
	if !exists(filepath.Join(ws, "tilde.bin")) {
		t.Errorf("rsync to ~/tilde.bin: not in the workspace")
	}
	// Outside the workspace is not reachable: the transfer container sees
	// only the workspace.
	if r := g.rsync(t, u, remote(proj, "/etc/shadow"), filepath.Join(dir, "shadow")); r.code == 0 {
		t.Errorf("rsync fetched /etc/shadow: %s", r)
	}
	if r := g.rsync(t, u, "-a", filepath.Join(src, "a.bin"), remote(proj, "/etc/ds01-e2e-x")); r.code == 0 {
		t.Errorf("rsync wrote to /etc: %s", r)
	}
	if exists("/etc/ds01-e2e-x") {
		os.Remove("/etc/ds01-e2e-x")
		t.Errorf("rsync created /etc/ds01-e2e-x on the host")
	}

	waitContainers(t, u.uid, proj, 0, 10*time.Second)
	waitNoTransferContainers(t, u.uid, 10*time.Second)
	if imgs := userImages(t, u.uid); len(imgs) != 0 {
		t.Errorf("rsync built images: %v", imgs)
	}
}
