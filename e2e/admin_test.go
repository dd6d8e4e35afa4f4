package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestAdmins: a member of admin_group acts across users over ssh
// ds01@host; everyone else is refused with one line and exit 1.
func TestAdmins(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	boss := g.addUser(t, "boss", 27101, 27101, "--group", "admin")
	alice := g.addUser(t, "alice", 27102, 27102, "--group", "student")
	carol := g.addUser(t, "carol", 27103, 27103)

	// alice and carol each have a session open in a container.
	aliceSess := g.startSSH(t, alice, "thesis", "echo up; sleep 300")
	carolSess := g.startSSH(t, carol, "exp", "echo up; sleep 300")
	aliceSess.waitOutput(t, "up", timeoutLong)
	carolSess.waitOutput(t, "up", timeoutLong)

	t.Run("a non-admin is refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"container-retire", "carol/exp"},
			{"container-list", "--all"},
			{"announce", "hello"},
			{"events", "--all"},
			{"user", "list"},
		} {
			r := g.ssh(t, alice, "ds01", args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "only admins") {
				t.Errorf("alice: %s: %s\nwant exit 1 and one line saying only admins may", strings.Join(args, " "), r)
			}
		}
		if ids := containers(t, carol.uid, "exp"); len(ids) != 1 {
			t.Errorf("carol's containers after alice's refused retire: %v", ids)
		}
		if out := g.mustSSH(t, alice, "ds01", "help"); strings.Contains(out, "announce") {
			t.Errorf("alice's help lists announce:\n%s", out)
		}
	})

	t.Run("announce reaches every open session", func(t *testing.T) {
		r := g.ssh(t, boss, "ds01", "announce", "'the server reboots at 18:00, save your work'")
		if r.code != 0 || !strings.Contains(r.stderr, "announced to 2 open session(s) and 2 .ds01-alerts file(s)") {
			t.Fatalf("announce: %s", r)
		}
		const line = "ds01: announcement from admin boss: the server reboots at 18:00, save your work"
		aliceSess.waitErr(t, line, timeoutShort)
		carolSess.waitErr(t, line, timeoutShort)
		for _, u := range []*user{alice, carol} {
			proj := map[*user]string{alice: "thesis", carol: "exp"}[u]
			if a := g.alerts(t, u, proj); !strings.Contains(a, "announcement from admin boss: the server reboots at 18:00") {
				t.Errorf("%s's .ds01-alerts: %q", u.name, a)
			}
			if uid, _ := fileOwner(t, g.alertsPath(u, proj)); uid != u.uid {
				t.Errorf("%s's .ds01-alerts is owned by uid %d", u.name, uid)
			}
		}
		// An escape sequence would rewrite other people's terminals.
		if r := g.ssh(t, boss, "ds01", "announce", "'\x1b[2Jgone'"); r.code != 2 || !strings.Contains(r.stderr, "control character") {
			t.Errorf("announce with an escape sequence: %s", r)
		}
		if strings.Contains(aliceSess.err.String(), "gone") {
			t.Errorf("alice's session got the escape sequence: %q", aliceSess.err.String())
		}
	})

	t.Run("an admin sees every container and user", func(t *testing.T) {
		var list []map[string]any
		out := g.mustSSH(t, boss, "ds01", "container-list", "--all", "--format", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
			t.Fatalf("container-list --all: %v\n%s", err, out)
		}
		if list[0]["user"] != "alice" || list[0]["project"] != "thesis" || list[1]["user"] != "carol" || list[1]["state"] != "running" {
			t.Errorf("container-list --all: %v", list)
		}
		out = g.mustSSH(t, boss, "ds01", "user", "list")
		for _, want := range []string{"alice", "27102", "student", "carol", "thesis"} {
			if !strings.Contains(out, want) {
				t.Errorf("user list lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("an admin retires another user's container", func(t *testing.T) {
		r := g.ssh(t, boss, "ds01", "container-retire", "carol/exp")
		if r.code != 0 {
			t.Fatalf("container-retire carol/exp: %s", r)
		}
		select {
		case <-carolSess.done:
		case <-time.After(timeoutShort):
			t.Fatal("carol's session outlived the admin's retire")
		}
		if !strings.Contains(carolSess.err.String(), "container exp retired by admin boss") {
			t.Errorf("carol's session was not told: %q", carolSess.err.String())
		}
		if ids := waitContainers(t, carol.uid, "exp", 0, timeoutShort); len(ids) != 0 {
			t.Errorf("carol's containers after the retire: %v", ids)
		}
		// alice's container is untouched.
		select {
		case <-aliceSess.done:
			t.Error("alice's session ended too")
		default:
		}
	})

	t.Run("events name the admin", func(t *testing.T) {
		out := g.mustSSH(t, boss, "ds01", "events", "--all", "--since", "1h", "--format", "json")
		seen := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec struct {
				EventType string         `json:"event_type"`
				User      string         `json:"user"`
				Details   map[string]any `json:"details"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("events --format json: %v in %q", err, line)
			}
			if rec.EventType == "admin.container_retire" && rec.Details["target_user"] != "carol" {
				t.Errorf("admin.container_retire does not name carol: %v", rec.Details)
			}
			seen[rec.EventType] = rec.User
		}
		for typ, who := range map[string]string{"admin.container_retire": "boss", "admin.announce": "boss", "container.retire": "carol"} {
			if seen[typ] != who {
				t.Errorf("events --all: %s by %q, want %q\n%s", typ, seen[typ], who, out)
			}
		}
		// carol sees her own events only, with the retire.
		out = g.mustSSH(t, carol, "ds01", "events")
		if !strings.Contains(out, "container.retire") || strings.Contains(out, "admin.announce") {
			t.Errorf("carol's events:\n%s", out)
		}
	})
}
