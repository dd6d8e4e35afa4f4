package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// docker runs a docker CLI command and returns its trimmed stdout.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func fields(s string) []string { return strings.Fields(s) }

// containers lists the IDs of a user's containers (all states), for one
// project or, with project "", all of them. Network holders are left
// out: they are no containers of the user's (holder_test.go).
func containers(t *testing.T, uid int, project string) []string {
	t.Helper()
	return listContainers(t, uid, project, false)
}

// listContainers lists a user's containers, network holders too if
// holders is set.
func listContainers(t *testing.T, uid int, project string, holders bool) []string {
	t.Helper()
	args := []string{"ps", "-a", "--no-trunc", "--format", `{{.ID}} {{.Label "ds01.role"}}`, "--filter", fmt.Sprintf("label=ds01.uid=%d", uid)}
	if project != "" {
		args = append(args, "--filter", "label=ds01.project="+project)
	}
	var ids []string
	for _, line := range strings.Split(docker(t, args...), "\n") {
		f := fields(line)
		if len(f) == 0 || (!holders && len(f) > 1 && f[1] == "netholder") {
			continue
		}
		ids = append(ids, f[0])
	}
	return ids
}

// waitContainers polls until the user has n containers for project.
func waitContainers(t *testing.T, uid int, project string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ids := containers(t, uid, project)
		if len(ids) == n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("uid %d project %q: want %d containers within %s, have %d: %v",
				uid, project, n, timeout, len(ids), ids)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// userImages lists the repo:tag names of the user's project images.
func userImages(t *testing.T, uid int) []string {
	t.Helper()
	prefix := fmt.Sprintf("ds01-%d/", uid)
	var imgs []string
	for _, ref := range fields(docker(t, "images", "--format", "{{.Repository}}:{{.Tag}}")) {
		if strings.HasPrefix(ref, prefix) {
			imgs = append(imgs, ref)
		}
	}
	return imgs
}

// removeUserArtifacts removes everything Docker holds for uid. It only
// reports problems: it runs in cleanups, where there is nothing to stop.
func removeUserArtifacts(t *testing.T, uid int) {
	t.Helper()
	if ids := listContainers(t, uid, "", true); len(ids) > 0 {
		if out, err := exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			t.Logf("cleanup: docker rm: %v: %s", err, out)
		}
	}
	if imgs := userImages(t, uid); len(imgs) > 0 {
		if out, err := exec.Command("docker", append([]string{"rmi", "-f"}, imgs...)...).CombinedOutput(); err != nil {
			t.Logf("cleanup: docker rmi: %v: %s", err, out)
		}
	}
	// Earlier builds of the user's images, untagged by later ones.
	if old := fields(docker(t, "images", "-a", "-q", "--filter", fmt.Sprintf("label=ds01.uid=%d", uid))); len(old) > 0 {
		exec.Command("docker", append([]string{"rmi", "-f"}, old...)...).Run()
	}
	// The user's network; absent if no container was ever launched.
	exec.Command("docker", "network", "rm", fmt.Sprintf("ds01-u%d", uid)).Run()
}
