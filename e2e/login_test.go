package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The first login to a project creates its workspace with a default
// Dockerfile, builds ds01-<uid>/<project>:latest and runs the session.
func TestFirstLoginCreatesProject(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "ada", 20001, 20001)

	r := g.ssh(t, u, "hello", "true")
	if r.code != 0 {
		t.Fatalf("first login: %s", r)
	}
	if s := strings.ToLower(r.stderr); !strings.Contains(s, "build") && !strings.Contains(s, "ready") {
		t.Errorf("first login: stderr should report the build or readiness, got %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("first login: progress must not go to stdout (it breaks scripts), got %q", r.stdout)
	}

	ws := g.workspace(u, "hello")
	fi, err := os.Stat(ws)
	if err != nil {
		t.Fatalf("workspace: %v", err)
	}
	if !fi.IsDir() {
		t.Fatalf("workspace %s is not a directory", ws)
	}
	if uid, gid := fileOwner(t, ws); uid != u.uid || gid != u.gid {
		t.Errorf("workspace owned by %d:%d, want %d:%d", uid, gid, u.uid, u.gid)
	}
	if from := firstFrom(t, filepath.Join(ws, "Dockerfile")); from != baseImage {
		t.Errorf("Dockerfile: first FROM names %q, want %q", from, baseImage)
	}
	image := "ds01-20001/hello:latest"
	if got := userImages(t, u.uid); !slices.Contains(got, image) {
		t.Errorf("images for uid %d: %v, want %s", u.uid, got, image)
	}
	imageID := docker(t, "image", "inspect", "--format", "{{.Id}}", image)

	// A new container (after the first retired) must reuse the image.
	waitContainers(t, u.uid, "hello", 0, g.retire+15*time.Second)
	r = g.ssh(t, u, "hello", "true")
	if r.code != 0 {
		t.Fatalf("second login: %s", r)
	}
	if regexp.MustCompile(`(?i)\bbuild(ing)?\b`).MatchString(r.stderr) {
		t.Errorf("second login built again: stderr %q", r.stderr)
	}
	if id := docker(t, "image", "inspect", "--format", "{{.Id}}", image); id != imageID {
		t.Errorf("image changed between logins: %s -> %s", imageID, id)
	}
}

// firstFrom returns the image named by the first FROM instruction.
func firstFrom(t *testing.T, dockerfile string) string {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || !strings.EqualFold(fs[0], "FROM") {
			continue
		}
		for _, w := range fs[1:] {
			if !strings.HasPrefix(w, "--") { // skip --platform=...
				return w
			}
		}
	}
	t.Fatalf("%s: no FROM line", dockerfile)
	return ""
}
