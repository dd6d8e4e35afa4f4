package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWorkspaceAsUser: the gateway, root on the host, touches a user's
// workspace only as that user and never through a symlink above it
// (issue 10, items 7 and 10).
func TestWorkspaceAsUser(t *testing.T) {
	g := startGateway(t, gwOpts{})
	ann := g.addUser(t, "ann", 25001, 25001)
	g.mustSSH(t, ann, "p", "true")
	ws := g.workspace(ann, "p")

	// A root-only file, as /root/secret or /etc/shadow would be.
	secretDir := filepath.Join(g.dir, "rootonly")
	if err := os.Mkdir(secretDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(secretDir, "shadow")
	if err := os.WriteFile(secret, []byte("root:TOPSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("a FIFO named with -r does not hang the gateway", func(t *testing.T) {
		g.mustSSH(t, ann, "p", "mkfifo /workspace/req.fifo")
		start := time.Now()
		r := g.ssh(t, ann, "ds01", "image-update", "p", "-r", "req.fifo")
		t.Logf("image-update -r FIFO: %s", r.stderr)
		if r.code == 0 || !strings.Contains(r.stderr, "not a regular file") {
			t.Errorf("image-update -r FIFO: %s", r)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("image-update -r FIFO took %s", d)
		}
	})

	t.Run("a build reads the workspace as the user", func(t *testing.T) {
		// protected_hardlinks stops users from linking files they cannot
		// read; the test, root, links one for them to show that the
		// build context is read with the user's own access.
		if err := os.Link(secret, filepath.Join(ws, "secret")); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(ws, "secret"))
		df := "FROM " + baseImage + "\nCOPY secret /secret\nRUN cat /secret\n"
		r := g.sshIn(t, ann, "ds01", strings.NewReader(df), "image-update", "p", "--dockerfile", "-")
		if r.code == 0 || strings.Contains(r.stderr, "TOPSECRET") {
			t.Errorf("a build with a root-only file in its context: %s", r)
		}
		t.Logf("build with a root-only file: %s", r.stderr)
		if !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("the refusal does not say why: %s", r)
		}
	})

	t.Run("a symlink above the workspace is refused, never followed", func(t *testing.T) {
		g.mustSSH(t, ann, "ds01", "container-retire", "p")
		// ann turns the directory holding her workspaces into a symlink
		// to a tree of root's (on a real host: ~/workspace -> /etc).
		home := filepath.Join(g.wsRoot, ann.name)
		if err := os.Rename(home, home+".real"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(home)
			os.Rename(home+".real", home)
		}()
		if err := os.Symlink(secretDir, home); err != nil {
			t.Fatal(err)
		}
		os.Lchown(home, ann.uid, ann.gid)
		os.Mkdir(filepath.Join(secretDir, "p"), 0o755) // a directory of root's where p would be

		for _, c := range []struct {
			login string
			args  []string
		}{
			{"p", []string{"true"}},
			{"q", []string{"true"}}, // a new project
			{"ds01", []string{"image-update", "p", "--rebuild"}},
			{"ds01", []string{"image-create", "r"}},
		} {
			r := g.ssh(t, ann, c.login, c.args...)
			t.Logf("ssh %s@gw %s: %s", c.login, strings.Join(c.args, " "), r.stderr)
			if r.code == 0 || !strings.Contains(r.stderr, "symlink") {
				t.Errorf("ssh %s@gw %s through a symlinked workspace root: %s", c.login, strings.Join(c.args, " "), r)
			}
		}
		sftp := runTool(t, timeoutShort, "", strings.NewReader("ls\n"), "sftp", g.sftpArgs(ann.key, "p", "-b", "-")...)
		if sftp.code == 0 {
			t.Errorf("sftp through a symlinked workspace root: %s", sftp)
		}
		entries, _ := os.ReadDir(secretDir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != "p shadow" {
			t.Errorf("the gateway wrote into root's tree: %v", names)
		}
		if entries, _ := os.ReadDir(filepath.Join(secretDir, "p")); len(entries) != 0 {
			t.Errorf("the gateway wrote into root's directory: %v", entries)
		}
		if len(containers(t, ann.uid, "p")) != 0 {
			t.Error("a container was launched on a symlinked workspace")
		}
	})
}

// TestContainerCapConcurrent: max_containers_per_user holds when logins to
// two projects arrive at the same moment (issue 10, item 11: with a cap of
// 1, both got a container five times out of five).
func TestContainerCapConcurrent(t *testing.T) {
	limits := filepath.Join(t.TempDir(), "resource-limits.yaml")
	if err := os.WriteFile(limits, []byte("defaults:\n  max_containers_per_user: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOpts{RetireAfter: "1s", Extra: map[string]string{"limits_file": limits}})
	bea := g.addUser(t, "bea", 25011, 25011)
	// Build both images first, so the logins below race on the launch.
	g.mustSSH(t, bea, "ds01", "image-create", "a")
	g.mustSSH(t, bea, "ds01", "image-create", "b")
	for round := range 3 {
		results := make(chan sshResult, 2)
		for _, p := range []string{"a+cpu", "b+cpu"} {
			go func() { results <- g.ssh(t, bea, p, "sleep 2") }()
		}
		ok, refused := 0, 0
		for range 2 {
			r := <-results
			switch {
			case r.code == 0:
				ok++
			case strings.Contains(r.stderr, "you run 1 of 1 containers"):
				refused++
			default:
				t.Errorf("round %d: %s", round, r)
			}
		}
		if ok != 1 || refused != 1 {
			t.Fatalf("round %d: %d logins got a container and %d were refused, want 1 and 1", round, ok, refused)
		}
		waitContainers(t, bea.uid, "", 0, timeoutShort)
	}
}

// TestImageLabelsAreNotTrusted: ds01.* labels in a user's image never show
// through on the container, and after a crash and restart the gateway
// credits no GPU the store did not record (issue 10, item 4: an image's
// LABEL ds01.gpu.uuids blocked the queue for everyone).
func TestImageLabelsAreNotTrusted(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s", Extra: map[string]string{"fake_gpus": "1"}})
	eve := g.addUser(t, "eve", 25021, 25021)
	// eve's image carries the gateway's labels (built here by the admin:
	// the gateway refuses them in Dockerfiles).
	ref := "ds01-25021/p:latest"
	df := "FROM " + baseImage + "\nLABEL ds01.gpu.uuids=GPU-fake-0000-0000-0000-000000000000 ds01.gpu.count=1 ds01.role=transfer ds01.io=/etc ds01.uid=0\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	docker(t, "build", "-q", "-t", ref, dir)
	g.mustSSH(t, eve, "ds01", "project", "list") // eve exists
	hold := g.startSSH(t, eve, "p+cpu", "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	id := containers(t, eve.uid, "p")[0]
	got := docker(t, "inspect", "-f", `{{index .Config.Labels "ds01.gpu.uuids"}}|{{index .Config.Labels "ds01.role"}}|{{index .Config.Labels "ds01.uid"}}|{{index .Config.Labels "ds01.gpu.count"}}|{{index .Config.Labels "ds01.io"}}`, id)
	fields := strings.Split(strings.TrimSpace(got), "|")
	if len(fields) != 5 || fields[0] != "" || fields[1] != "" || fields[2] != "25021" || fields[3] != "0" || !strings.HasPrefix(fields[4], g.dataDir) {
		t.Errorf("container labels show the image's: %q", got)
	}
	g.kill9(t)
	g.start(t)
	var st struct {
		Slots []struct {
			User *string `json:"user"`
		} `json:"slots"`
	}
	if err := json.Unmarshal([]byte(g.mustSSH(t, eve, "ds01", "gpu-status", "--format", "json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Slots {
		if s.User != nil {
			t.Errorf("after a restart, the GPU is credited to %s on the strength of an image label", *s.User)
		}
	}
	if ids := containers(t, eve.uid, "p"); len(ids) != 1 || ids[0] != id {
		t.Errorf("the container was not adopted as eve's project container: %v", ids)
	}
	// The GPU is free for the next user.
	out := g.mustSSH(t, eve, "other", gpuEnv)
	if visible(out) != "GPU-fake-0000-0000-0000-000000000000" {
		t.Errorf("the free GPU was not handed out: %q", out)
	}
}
