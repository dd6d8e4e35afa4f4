package e2e

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// coldProject logs in once (building the image) and retires the
// container: the next login to project is cold.
func coldProject(t *testing.T, g *gw, u *user, project string) {
	t.Helper()
	g.mustSSH(t, u, project, "true")
	g.mustSSH(t, u, "ds01", "container-retire", project)
	waitContainers(t, u.uid, project, 0, 10*time.Second)
}

// An sftp-only connection to a cold project leaves no container behind:
// one started early for it (after authentication) is retired as soon as
// it turns out to be a file transfer, not after the grace.
func TestColdSFTPLeavesNoContainer(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "1m"})
	u := g.addUser(t, "earlysftp", 28050, 28050)
	coldProject(t, g, u, "p")
	for range 3 {
		g.mustSFTP(t, u, "p", t.TempDir(), "ls\n")
		if !waitFor(2*time.Second, func() bool { return len(containers(t, u.uid, "p")) == 0 }) {
			t.Fatalf("containers after an sftp session: %v\n%s", containers(t, u.uid, "p"), g.out.String())
		}
	}
	time.Sleep(time.Second) // nor one whose launch finished late
	if ids := containers(t, u.uid, "p"); len(ids) != 0 {
		t.Fatalf("containers a second later: %v", ids)
	}
}

var containerIDRe = regexp.MustCompile(`[0-9a-f]{64}`)

// A cold `ssh p true` works, and two cold logins at once land in the same
// container: the early start and the sessions share one launch.
func TestColdLoginsShareTheEarlyContainer(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "1m", Extra: map[string]string{"log_level": "debug"}})
	u := g.addUser(t, "earlyssh", 28051, 28051)
	coldProject(t, g, u, "p")
	if r := g.ssh(t, u, "p", "true"); r.code != 0 {
		t.Fatalf("cold ssh true: %s", r)
	}
	g.mustSSH(t, u, "ds01", "container-retire", "p")
	waitContainers(t, u.uid, "p", 0, 10*time.Second)
	var wg sync.WaitGroup
	out := make([]sshResult, 2)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = g.ssh(t, u, "p", "cat", "/proc/self/cgroup")
		}()
	}
	wg.Wait()
	a, b := containerIDRe.FindString(out[0].stdout), containerIDRe.FindString(out[1].stdout)
	if out[0].code != 0 || out[1].code != 0 || a == "" || a != b {
		t.Fatalf("two cold logins:\n%s\n%s", out[0], out[1])
	}
	if ids := containers(t, u.uid, "p"); len(ids) != 1 {
		t.Fatalf("containers: %v", ids)
	}
	// The launch's timings, for the record (go test -v).
	for _, l := range strings.Split(g.out.String(), "\n") {
		if strings.Contains(l, "timings") || strings.Contains(l, "create and start") || strings.Contains(l, "early") || strings.Contains(l, "container launched") {
			t.Log(l)
		}
	}
}
