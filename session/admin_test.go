package session

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// adminWorld is a manager with two users, each with a running container
// and one open session whose notices are recorded.
func adminWorld(t *testing.T) (m *Manager, ann, bob store.User, annOut, bobOut *syncWriter) {
	t.Helper()
	ctx := context.Background()
	m, _ = newTestManager(t, newMem(), time.Minute)
	ann = store.User{Name: "ann", UID: 27101, GID: 27101}
	bob = store.User{Name: "bob", UID: 27102, GID: 27102, Group: "student"}
	annOut, bobOut = &syncWriter{}, &syncWriter{}
	for _, s := range []struct {
		u   store.User
		out io.Writer
	}{{ann, annOut}, {bob, bobOut}} {
		if err := m.store.AddUser(ctx, s.u, nil); err != nil {
			t.Fatal(err)
		}
		l, err := m.Attach(ctx, s.u, "p", Default, s.out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Release)
		// A forward's lease has no terminal: it hears nothing.
		f, err := m.Attach(ctx, s.u, "p", Default, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Release)
	}
	return m, ann, bob, annOut, bobOut
}

func eventsOf(t *testing.T, m *Manager, typ string) []store.Event {
	t.Helper()
	es, err := m.store.ListEvents(context.Background(), store.EventFilter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestAnnounceReachesSessionsAndAlertsFiles(t *testing.T) {
	m, ann, bob, annOut, bobOut := adminWorld(t)
	ctx := context.Background()
	boss := store.User{Name: "boss", UID: 27199, GID: 27199, Group: "admin"}
	// bob's alerts file is a symlink to a file of ann's: the write must not
	// follow it.
	victim := filepath.Join(workspaceOf(t, m, ann, "p"), "secret")
	if err := os.WriteFile(victim, []byte("ann's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(workspaceOf(t, m, bob, "p"), alertsFile)); err != nil {
		t.Fatal(err)
	}

	res := m.Admin().Announce(ctx, boss, "reboot at six")
	if res.Sessions != 2 || res.Files != 1 || res.Failed != 1 {
		t.Errorf("announce reached %+v, want 2 sessions, 1 file, 1 failed", res)
	}
	want := "ds01: announcement from admin boss: reboot at six\n"
	for name, out := range map[string]*syncWriter{"ann": annOut, "bob": bobOut} {
		waitFor(t, name+"'s session to hear it", func() bool { return strings.Contains(out.String(), want) })
	}
	b, err := os.ReadFile(filepath.Join(workspaceOf(t, m, ann, "p"), alertsFile))
	if err != nil || !strings.HasSuffix(string(b), " announcement from admin boss: reboot at six\n") {
		t.Errorf("ann's .ds01-alerts: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "ann's\n" {
		t.Errorf("the write followed bob's symlink: %q", b)
	}
	es := eventsOf(t, m, "admin.announce")
	var d map[string]any
	if len(es) != 1 || es[0].User != "boss" || json.Unmarshal([]byte(es[0].Details), &d) != nil || d["text"] != "reboot at six" || d["sessions"] != 2.0 {
		t.Errorf("admin.announce events: %+v", es)
	}
	// Both users' sessions took it: nothing waits for their next login.
	if ns, _ := m.store.UnseenNotices(ctx, "ann"); len(ns) != 0 {
		t.Errorf("unseen notices for ann: %v", ns)
	}
	if n := m.Broadcast("ds01: second"); n != 2 {
		t.Errorf("Broadcast reached %d sessions, want 2", n)
	}
}

func TestAdminRetiresAnotherUsersContainer(t *testing.T) {
	m, _, bob, _, _ := adminWorld(t)
	ctx := context.Background()
	boss := store.User{Name: "boss", UID: 27199, GID: 27199, Group: "admin"}
	a := m.Admin()
	l, err := m.Attach(ctx, bob, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := a.RetireUserContainer(ctx, boss, "bob", "p"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Retired():
	default:
		t.Fatal("bob's lease did not hear of the retirement")
	}
	if l.RetiredWhy() != "retired by admin boss" {
		t.Errorf("why = %q", l.RetiredWhy())
	}
	if es := eventsOf(t, m, "container.retire"); len(es) != 1 || es[0].User != "bob" {
		t.Errorf("container.retire events: %+v", es)
	}
	es := eventsOf(t, m, "admin.container_retire")
	if len(es) != 1 || es[0].User != "boss" || es[0].Project != "p" || !strings.Contains(es[0].Details, `"target_user":"bob"`) {
		t.Errorf("admin.container_retire events: %+v", es)
	}
	if err := a.RetireUserContainer(ctx, boss, "bob", "p"); !errors.Is(err, ErrNoContainer) {
		t.Errorf("second retire: %v", err)
	}
	if err := a.RetireUserContainer(ctx, boss, "nobody", "p"); !errors.Is(err, ErrNoUser) {
		t.Errorf("unknown user: %v", err)
	}
	if err := a.RetireUserContainer(ctx, boss, "bob", "../x"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad project: %v", err)
	}
	if n := len(eventsOf(t, m, "admin.container_retire")); n != 1 {
		t.Errorf("failed retires recorded %d admin events, want 1", n)
	}
}

func TestAdminListsEveryone(t *testing.T) {
	m, _, _, _, _ := adminWorld(t)
	ctx := context.Background()
	a := m.Admin()
	cs, err := a.AllContainers(ctx, false)
	if err != nil || len(cs) != 2 || cs[0].User != "ann" || cs[1].User != "bob" || cs[1].Connections != 2 || !cs[0].Current {
		t.Fatalf("AllContainers = %+v, %v", cs, err)
	}
	if err := m.RetireContainer(ctx, store.User{Name: "ann", UID: 27101}, "p", "test"); err != nil {
		t.Fatal(err)
	}
	cs, err = a.AllContainers(ctx, true)
	if err != nil || len(cs) != 2 || cs[0].User != "bob" || cs[1].User != "ann" || cs[1].State != store.StateRetired {
		t.Errorf("AllContainers(retired) = %+v, %v", cs, err)
	}
	us, err := a.Users(ctx)
	if err != nil || len(us) != 2 {
		t.Fatalf("Users = %+v, %v", us, err)
	}
	if us[0].Name != "ann" || us[0].Containers != 0 || len(us[0].Projects) != 1 || us[1].Containers != 1 || us[1].Group != "student" {
		t.Errorf("Users = %+v", us)
	}
}
