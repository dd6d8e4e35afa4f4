package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// Transfers to projects that do not exist yet create only the workspace
// (directory and default Dockerfile): no image, no container left behind.
// A running project container is neither needed nor used.
func TestTransferNeedsNoContainer(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "nils", 20271, 20271)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	sum := writeRandom(t, f, 5000)

	checkNew := func(proj string) {
		t.Helper()
		ws := g.workspace(u, proj)
		if sha256File(t, filepath.Join(ws, "f")) != sum {
			t.Errorf("%s: f not in the workspace", proj)
		}
		if uid, gid := fileOwner(t, ws); uid != u.uid || gid != u.gid {
			t.Errorf("%s: workspace owned by %d:%d, want %d:%d", proj, uid, gid, u.uid, u.gid)
		}
		if from := firstFrom(t, filepath.Join(ws, "Dockerfile")); from != baseImage {
			t.Errorf("%s: Dockerfile FROM %q, want %q", proj, from, baseImage)
		}
		if ids := containers(t, u.uid, proj); len(ids) != 0 {
			t.Errorf("%s: transfer left containers: %v", proj, ids)
		}
	}

	g.mustSFTP(t, u, "new-sftp", dir, "put f\n")
	checkNew("new-sftp")
	g.mustSCP(t, u, dir, f, remote("new-scp", ""))
	checkNew("new-scp")
	g.mustSCP(t, u, dir, "-O", f, remote("new-legacy", ""))
	checkNew("new-legacy")
	g.mustSCP(t, u, dir, "-O", remote("new-legacy", "f"), filepath.Join(dir, "legacy-back"))
	if sha256File(t, filepath.Join(dir, "legacy-back")) != sum {
		t.Errorf("scp -O download: wrong content")
	}
	g.mustRsync(t, u, f, remote("new-rsync", ""))
	waitContainers(t, u.uid, "new-rsync", 0, 10*time.Second)
	checkNew("new-rsync")
	waitNoTransferContainers(t, u.uid, 10*time.Second)
	if imgs := userImages(t, u.uid); len(imgs) != 0 {
		t.Errorf("transfers built images: %v", imgs)
	}

	// With the project container running, transfers still work and leave
	// it alone (no second project container).
	const proj = "running"
	hold := g.startSSH(t, u, proj, "echo up && sleep 120")
	hold.waitOutput(t, "up", 2*time.Minute)
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("want 1 container, have %v", ids)
	}
	g.mustSFTP(t, u, proj, dir, "put f via-sftp\n")
	g.mustSCP(t, u, dir, "-O", f, remote(proj, "via-legacy"))
	g.mustRsync(t, u, f, remote(proj, "via-rsync"))
	waitNoTransferContainers(t, u.uid, 10*time.Second)
	out := g.mustSSH(t, u, proj, "cd /workspace && sha256sum via-sftp via-legacy via-rsync")
	if strings.Count(out, sum) != 3 {
		t.Errorf("inside the container: %q, want %s three times", out, sum)
	}
	if now := containers(t, u.uid, proj); len(now) != 1 || now[0] != ids[0] {
		t.Errorf("project containers changed from %v to %v", ids, now)
	}
	hold.stop()
}

// Four users transfer at once; each gets their own bytes back.
func TestTransferParallelUsers(t *testing.T) {
	g := startGateway(t, gwOpts{})
	var users []*user
	for i, name := range []string{"pia", "paul", "pete", "pola"} {
		users = append(users, g.addUser(t, name+"x", 20281+i, 20281+i))
	}
	const proj = "par"
	t.Run("group", func(t *testing.T) {
		for _, u := range users {
			u := u
			t.Run(u.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				sum := writeRandom(t, filepath.Join(dir, "data"), 20<<20)
				r := runTool(t, 2*time.Minute, dir, strings.NewReader("put data\nget data back\n"),
					"sftp", g.sftpArgs(u.key, proj, "-b", "-")...)
				if r.code != 0 {
					t.Fatalf("sftp: %s", r)
				}
				if got := sha256File(t, filepath.Join(dir, "back")); got != sum {
					t.Errorf("downloaded sha256 %s, want %s", got, sum)
				}
				host := filepath.Join(g.workspace(u, proj), "data")
				if got := sha256File(t, host); got != sum {
					t.Errorf("host sha256 %s, want %s", got, sum)
				}
				if uid, gid := fileOwner(t, host); uid != u.uid || gid != u.gid {
					t.Errorf("owned by %d:%d, want %d:%d", uid, gid, u.uid, u.gid)
				}
			})
		}
	})
}

type transferDetails struct {
	Protocol string `json:"protocol"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// Each transfer session leaves a `transfer` event with its protocol and
// byte counts.
func TestTransferEvents(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "eva", 20291, 20291)
	const proj = "ev"
	dir := t.TempDir()
	const n = 3 << 20
	writeRandom(t, filepath.Join(dir, "f"), n)
	g.mustSFTP(t, u, proj, dir, "put f\n")
	g.mustSFTP(t, u, proj, dir, "get f back\n")
	g.mustSCP(t, u, dir, "-O", filepath.Join(dir, "f"), remote(proj, "legacy"))
	g.mustRsync(t, u, filepath.Join(dir, "f"), remote(proj, "synced"))

	type want struct {
		protocol string
		in, out  bool // bytes_in >= n, bytes_out >= n
	}
	wants := []want{{"sftp", true, false}, {"sftp", false, true}, {"scp", true, false}, {"rsync", true, false}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := transferEvents(t, g, u.name, proj)
		var missing []string
		for _, w := range wants {
			found := false
			for _, e := range evs {
				var d transferDetails
				if json.Unmarshal([]byte(e.Details), &d) != nil || d.Protocol != w.protocol {
					continue
				}
				if (!w.in || d.BytesIn >= n) && (!w.out || d.BytesOut >= n) && e.Duration > 0 {
					found = true
				}
			}
			if !found {
				missing = append(missing, fmt.Sprintf("%+v", w))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var have []string
			for _, e := range evs {
				have = append(have, fmt.Sprintf("%s %s/%s %s %s", e.Type, e.User, e.Project, e.Duration, e.Details))
			}
			t.Fatalf("no transfer event for %v (n=%d); have:\n%s", missing, n, strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Details is a JSON object with exactly the documented keys, and the
	// download's bytes_in and upload's bytes_out stay small.
	for _, e := range transferEvents(t, g, u.name, proj) {
		var m map[string]any
		if err := json.Unmarshal([]byte(e.Details), &m); err != nil {
			t.Errorf("details %q: %v", e.Details, err)
			continue
		}
		for _, k := range []string{"protocol", "bytes_in", "bytes_out"} {
			if _, ok := m[k]; !ok {
				t.Errorf("details %q: no %s", e.Details, k)
			}
		}
		var d transferDetails
		json.Unmarshal([]byte(e.Details), &d)
		if d.BytesIn >= n && d.BytesOut >= n {
			t.Errorf("one session counted %d in and %d out: %q", d.BytesIn, d.BytesOut, e.Details)
		}
	}
}

func transferEvents(t *testing.T, g *gw, userName, proj string) []store.Event {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(g.dataDir, "ds01.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.ListEvents(context.Background(), store.EventFilter{User: userName, Project: proj, Type: "transfer"})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
