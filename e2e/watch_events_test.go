package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestWatchNoticesDockerKill: a container killed outside the gateway
// (docker kill) is noticed from the engine's event stream within about
// 2 s and removed, and the next login gets a fresh one. The watch's sweep
// runs only every watch_interval, an hour here: only the stream is that
// quick.
func TestWatchNoticesDockerKill(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "1h", Extra: map[string]string{"watch_interval": "1h"}})
	u := g.addUser(t, "kilian", 28600, 28600)
	const proj = "killed"
	hold := g.startSSH(t, u, proj, "echo up && sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("want 1 container, have %v", ids)
	}
	start := time.Now()
	docker(t, "kill", ids[0])
	for !strings.Contains(g.out.String(), `msg="container gone"`) {
		if time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("the gateway did not notice the kill within 2.5 s; its log:\n%s", lastLines(g.out.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("noticed %s after docker kill", time.Since(start).Round(time.Millisecond))
	// The engine keeps a killed container until someone removes it: the
	// gateway's retire did.
	waitContainers(t, u.uid, proj, 0, timeoutShort)
	select {
	case <-hold.done:
	case <-time.After(timeoutShort):
		t.Error("the session outlived its container")
	}
	if got := g.mustSSH(t, u, proj, "echo again"); got != "again\n" {
		t.Errorf("a login after the kill: %q", got)
	}
	if now := containers(t, u.uid, proj); len(now) != 1 || now[0] == ids[0] {
		t.Errorf("want one fresh container, have %v (killed %s)", now, ids[0])
	}
}
