package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// lineage lists the IDs of every image labelled for uid's project,
// tagged or not, intermediate layers included.
func lineage(t *testing.T, uid int, project string) []string {
	t.Helper()
	ids := fields(docker(t, "images", "-a", "-q", "--no-trunc",
		"--filter", fmt.Sprintf("label=ds01.uid=%d", uid), "--filter", "label=ds01.project="+project))
	slices.Sort(ids)
	return slices.Compact(ids)
}

func imageOf(t *testing.T, uid int, project string) string {
	t.Helper()
	return docker(t, "image", "inspect", "-f", "{{.Id}}", fmt.Sprintf("ds01-%d/%s", uid, project))
}

// waitLineage polls until the project's images are want.
func waitLineage(t *testing.T, uid int, project string, want []string, timeout time.Duration) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(timeout)
	for {
		got := lineage(t, uid, project)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("images of ds01-%d/%s = %v, want %v", uid, project, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Three rebuilds with no container leave exactly one image; with a
// container on the first image, two, and one once it retires. A fresh
// project container has git (the base image's DS01 tools).
func TestRebuildsLeaveOneImage(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s", Extra: map[string]string{"build_cache_max": "20g"}})
	dana := g.addUser(t, "dana", 27401, 27401)
	cmd := func(args ...string) sshResult {
		t.Helper()
		r := g.ssh(t, dana, "ds01", args...)
		if r.code != 0 {
			t.Fatalf("ssh ds01@gw %s: %s", strings.Join(args, " "), r)
		}
		return r
	}

	t.Run("no container", func(t *testing.T) {
		cmd("image-create", "solo")
		for i := 0; i < 3; i++ {
			cmd("image-update", "solo", "--no-cache")
		}
		waitLineage(t, dana.uid, "solo", []string{imageOf(t, dana.uid, "solo")}, timeoutShort)
	})

	t.Run("a container on the first image", func(t *testing.T) {
		hold := g.startSSH(t, dana, "held", "echo up; sleep 300")
		hold.waitOutput(t, "up", timeoutLong)
		first := imageOf(t, dana.uid, "held")
		if out := g.mustSSH(t, dana, "held", "git --version"); !strings.HasPrefix(out, "git version") {
			t.Errorf("git --version in a fresh project container: %q", out)
		}
		for i := 0; i < 3; i++ {
			r := cmd("image-update", "held", "--no-cache")
			if !strings.Contains(r.stderr, "still runs the previous image") {
				t.Errorf("image-update did not say the container keeps its image: %s", r)
			}
		}
		cur := imageOf(t, dana.uid, "held")
		waitLineage(t, dana.uid, "held", []string{first, cur}, timeoutShort)
		// The running container still works on its image.
		if out := g.mustSSH(t, dana, "held", "echo still"); strings.TrimSpace(out) != "still" {
			t.Errorf("the running container after the rebuilds: %q", out)
		}
		cmd("container-retire", "held")
		hold.stop()
		waitLineage(t, dana.uid, "held", []string{cur}, timeoutShort)
	})

	t.Run("image-list sizes", func(t *testing.T) {
		var list []map[string]any
		if err := json.Unmarshal([]byte(cmd("image-list", "--format", "json").stdout), &list); err != nil || len(list) != 2 {
			t.Fatalf("image-list --format json: %v %v", list, err)
		}
		for _, img := range list {
			if n, _ := img["size_bytes"].(float64); n <= 0 || img["created"] == nil {
				t.Errorf("image-list entry without size_bytes or created: %v", img)
			}
		}
		if out := cmd("image-list").stdout; !strings.Contains(out, "SIZE") || !strings.Contains(out, " MB") {
			t.Errorf("image-list table lacks sizes:\n%s", out)
		}
	})

	t.Run("disk-usage is for admins", func(t *testing.T) {
		r := g.ssh(t, dana, "ds01", "disk-usage")
		if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "ds01: ") {
			t.Errorf("non-admin disk-usage: %s", r)
		}
		admin := g.addUser(t, "diskadmin", 27403, 27403, "--group", "admin")
		r = g.ssh(t, admin, "ds01", "disk-usage", "--format", "json")
		var rep struct {
			Users []struct {
				User           string `json:"user"`
				Images         int    `json:"images"`
				ImageBytes     int64  `json:"image_bytes"`
				Workspaces     int    `json:"workspaces"`
				WorkspaceBytes int64  `json:"workspace_bytes"`
			} `json:"users"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil {
			t.Fatalf("admin disk-usage --format json: %v\n%s", err, r)
		}
		found := false
		for _, u := range rep.Users {
			if u.User == dana.name {
				found = u.Images == 2 && u.ImageBytes > 0 && u.Workspaces == 2
			}
		}
		if !found {
			t.Errorf("admin disk-usage: dana's 2 images and 2 workspaces missing: %+v", rep.Users)
		}
	})
	if strings.Contains(g.out.String(), "prune build cache") {
		t.Errorf("build_cache_max: the prune failed:\n%s", lastLines(g.out.String(), 40))
	}
}

// user remove --purge, beside the live gateway: refused while the user's
// container runs; with --force it stops it, and removes the user's images
// and network, leaving the workspace.
func TestUserRemovePurge(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	eve := g.addUser(t, "eve", 27402, 27402)
	hold := g.startSSH(t, eve, "gone", "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	g.mustSSH(t, eve, "ds01", "image-create", "other")
	purge := func(extra ...string) (string, error) {
		out, err := exec.Command(gatewayBin, append([]string{"user", "remove", "eve", "--purge", "--config", g.cfgPath}, extra...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := purge(); err == nil || !strings.Contains(out, "--force") || !strings.Contains(out, "gone") {
		t.Fatalf("purge of a user with a running container: %v\n%s", err, out)
	}
	if r := g.ssh(t, eve, "gone", "echo still"); r.code != 0 {
		t.Fatalf("the refused purge broke the user: %s", r)
	}
	out, err := purge("--force")
	if err != nil {
		t.Fatalf("purge --force: %v\n%s", err, out)
	}
	t.Logf("user remove eve --purge --force:\n%s", out)
	select {
	case <-hold.done:
	case <-time.After(timeoutShort):
		t.Error("the user's session outlived the purge")
	}
	if ids := containers(t, eve.uid, ""); len(ids) != 0 {
		t.Errorf("containers left: %v", ids)
	}
	if ids := fields(docker(t, "images", "-a", "-q", "--filter", fmt.Sprintf("label=ds01.uid=%d", eve.uid))); len(ids) != 0 {
		t.Errorf("images left: %v", ids)
	}
	if out, err := exec.Command("docker", "network", "inspect", fmt.Sprintf("ds01-u%d", eve.uid)).CombinedOutput(); err == nil {
		t.Errorf("network left: %s", out)
	}
	if _, err := os.Stat(g.workspace(eve, "gone") + "/Dockerfile"); err != nil {
		t.Errorf("workspace not kept: %v", err)
	}
	if r := g.ssh(t, eve, "gone", "true"); r.code == 0 {
		t.Errorf("the removed user still logs in: %s", r)
	}
	// The gateway, which had the network in its cache, serves the uid
	// added again: it creates the network anew.
	eva := g.addUser(t, "eva", 27402, 27402)
	if r := g.ssh(t, eva, "again", "echo ok"); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Errorf("the user added again: %s", r)
	}
}
