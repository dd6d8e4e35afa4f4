package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The login name is a project of the authenticated user: two users with a
// project of the same name get two workspaces and two containers.
func TestProjectsArePerUser(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "anna", 20081, 20081)
	b := g.addUser(t, "ben", 20082, 20082)
	const proj = "my-thesis"

	g.mustSSH(t, a, proj, "echo a > /workspace/anna-was-here")
	out := g.mustSSH(t, b, proj, "id -u; ls -A /workspace")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "20082" {
		t.Errorf("B's session runs as uid %q, want 20082", lines[0])
	}
	if strings.Contains(out, "anna-was-here") {
		t.Errorf("B sees A's files: %q", out)
	}
	if _, err := os.Stat(filepath.Join(g.workspace(b, proj), "anna-was-here")); err == nil {
		t.Errorf("A's file is in B's workspace on the host")
	}
	if g.workspace(a, proj) == g.workspace(b, proj) {
		t.Fatalf("same workspace path for both users")
	}
	if out := g.mustSSH(t, a, proj, "ls -A /workspace"); !strings.Contains(out, "anna-was-here") {
		t.Errorf("A lost her file: %q", out)
	}
}

// Invalid project names are refused before anything is created.
func TestInvalidProjectNamesRejected(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "ivy", 20091, 20091)

	names := []string{
		"../x", "A", "a b", "x;id", "$(id)", strings.Repeat("a", 64), "-x", "_x",
		"ds01", // the command login: reserved, no exec there for now
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			// OpenSSH refuses some of these names itself; the x/crypto client
			// sends every name, so the gateway's own check is always reached.
			r := runSSH(t, timeoutShort, nil, append(g.sshArgs(u.key, name), "true")...)
			checkRefused(t, "openssh", name, r)
			checkRefused(t, "x/crypto", name, g.goSSH(t, u.key, name, "true"))
		})
	}

	// Nothing on disk (beyond empty directories), no image, no container.
	_ = filepath.WalkDir(g.wsRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if !os.IsNotExist(err) {
				t.Errorf("walk %s: %v", path, err)
			}
			return nil
		}
		if !d.IsDir() {
			t.Errorf("invalid logins created %s", path)
		} else if path != g.wsRoot && path != filepath.Join(g.wsRoot, u.name) {
			t.Errorf("invalid logins created directory %s", path)
		}
		return nil
	})
	if imgs := userImages(t, u.uid); len(imgs) != 0 {
		t.Errorf("invalid logins built images: %v", imgs)
	}
	if ids := containers(t, u.uid, ""); len(ids) != 0 {
		t.Errorf("invalid logins created containers: %v", ids)
	}
}

func checkRefused(t *testing.T, client, name string, r sshResult) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("%s: login %q succeeded: %s", client, name, r)
		return
	}
	msg := strings.TrimSpace(r.stderr)
	if msg == "" {
		t.Errorf("%s: login %q: exit %d with no explanation on stderr", client, name, r.code)
	} else if n := len(strings.Split(msg, "\n")); n > 1 {
		t.Errorf("%s: login %q: want a one-line explanation, got %d lines: %q", client, name, n, msg)
	}
	t.Logf("%s: login %q: exit %d: %s", client, name, r.code, msg)
}
