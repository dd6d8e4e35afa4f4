package commands

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

// fakeAdmin is the admin part of fakeService: it records what was asked.
type fakeAdmin struct {
	all        []session.ContainerInfo
	own        []session.ContainerInfo // the user's own, for container-list
	queue      []gpu.Waiter
	ownRetired bool
	allRetired *bool
	retired    []string // "admin: user/project"
	announced  []string
	audits     []string
	events     []store.Event
	filter     *store.EventFilter
	users      []session.UserInfo
}

func (f *fakeAdmin) AllContainers(_ context.Context, retired bool) ([]session.ContainerInfo, error) {
	f.allRetired = &retired
	return f.all, nil
}
func (f *fakeAdmin) RetireUserContainer(_ context.Context, admin store.User, user, project string) error {
	f.retired = append(f.retired, admin.Name+": "+user+"/"+project)
	return nil
}
func (f *fakeAdmin) Announce(_ context.Context, admin store.User, text string) session.Announced {
	f.announced = append(f.announced, admin.Name+": "+text)
	return session.Announced{Sessions: 2, Files: 1}
}
func (f *fakeAdmin) Users(context.Context) ([]session.UserInfo, error) { return f.users, nil }
func (f *fakeAdmin) Audit(_ context.Context, admin store.User, action string, _ map[string]any) {
	f.audits = append(f.audits, admin.Name+": "+action)
}
func (f *fakeAdmin) ListEvents(_ context.Context, fl store.EventFilter) ([]store.Event, error) {
	f.filter = &fl
	return append([]store.Event(nil), f.events...), nil
}

// A non-admin asking for an admin command or flag gets one line and exit
// 1, and nothing reaches the service.
func TestAdminRefusedToOthers(t *testing.T) {
	for _, line := range []string{
		"announce reboot at six",
		"container-list --all",
		"container-list -a --retired",
		"container-retire bob/train",
		"user list",
		"users --format json",
		"events --all",
		"events --user bob",
	} {
		f := &fakeService{}
		code, stdout, stderr := run(t, f, "", line)
		if code != ExitFail {
			t.Errorf("%q by a non-admin: exit %d, want 1 (%s)", line, code, stderr)
		}
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ds01: ") || !strings.Contains(lines[0], "only admins") {
			t.Errorf("%q by a non-admin: stderr %q, want one ds01: line saying only admins may", line, stderr)
		}
		if stdout != "" || f.allRetired != nil || len(f.retired)+len(f.announced)+len(f.audits) != 0 || f.filter != nil {
			t.Errorf("%q by a non-admin reached the service: %+v, stdout %q", line, f.fakeAdmin, stdout)
		}
	}
}

// help lists the admin commands and flags to admins only.
func TestHelpShowsAdminCommandsToAdminsOnly(t *testing.T) {
	f := &fakeService{}
	_, user, _ := run(t, f, "", "help")
	_, admin, _ := runAdmin(t, f, "help")
	for _, name := range []string{"announce", "user-list"} {
		if strings.Contains(user, name) {
			t.Errorf("a non-admin's help lists %s:\n%s", name, user)
		}
		if !strings.Contains(admin, name) {
			t.Errorf("an admin's help lacks %s:\n%s", name, admin)
		}
	}
	if !strings.Contains(user, "events") || !strings.Contains(user, "container-list") {
		t.Errorf("a non-admin's help lacks the user commands:\n%s", user)
	}
	_, user, _ = run(t, f, "", "container-list --help")
	_, admin, _ = runAdmin(t, f, "container-list --help")
	if strings.Contains(user, "--all") || !strings.Contains(user, "--retired") {
		t.Errorf("a non-admin's container-list --help:\n%s", user)
	}
	if !strings.Contains(admin, "--all") {
		t.Errorf("an admin's container-list --help lacks --all:\n%s", admin)
	}
}

// --retired is what --all meant before admins: one's own retired
// containers.
func TestContainerListRetiredAndAll(t *testing.T) {
	f := &fakeService{}
	if code, _, stderr := run(t, f, "", "container-list --retired"); code != 0 || !f.ownRetired {
		t.Errorf("container-list --retired: exit %d, retired %v (%s)", code, f.ownRetired, stderr)
	}
	now := time.Now()
	f.all = []session.ContainerInfo{
		{User: "ann", Project: "thesis", Name: "ds01-ann.thesis-1", ID: "c1", State: store.StateRunning, Connections: 1, Created: now,
			GPUs: []gpu.Slot{{UUID: "GPU-1", Index: "0"}}},
		{User: "bob", Project: "train", Name: "ds01-bob.train-2", ID: "c2", State: store.StateRunning, Created: now,
			Life: session.Life{Detached: true, IdleSince: now, Deadline: now.Add(time.Hour), DeadlineReason: "idle"}},
	}
	code, out, stderr := runAdmin(t, f, "container-list --all")
	if code != 0 || f.allRetired == nil || *f.allRetired {
		t.Fatalf("container-list --all: exit %d (%s)", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "USER") || !strings.HasPrefix(lines[1], "ann ") || !strings.HasPrefix(lines[2], "bob ") {
		t.Fatalf("container-list --all:\n%s", out)
	}
	for _, want := range []string{"attached 1", "0 ", "detached", "(idle)"} {
		if !strings.Contains(out, want) {
			t.Errorf("container-list --all lacks %q:\n%s", want, out)
		}
	}
	if len(f.audits) != 1 || f.audits[0] != "boss: container_list" {
		t.Errorf("audits %v", f.audits)
	}
	runAdmin(t, f, "container-list --all --retired")
	if !*f.allRetired {
		t.Error("--all --retired did not ask for the retired ones")
	}
	_, out, _ = runAdmin(t, f, "container-list --all --format json")
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 2 || v[1]["user"] != "bob" || v[1]["detached"] != true || v[1]["deadline_reason"] != "idle" {
		t.Errorf("container-list --all --format json: %v %s", err, out)
	}
}

func TestContainerRetireByAdmin(t *testing.T) {
	f := &fakeService{}
	code, _, stderr := runAdmin(t, f, "container-retire bob/train")
	if code != 0 || len(f.retired) != 1 || f.retired[0] != "boss: bob/train" {
		t.Fatalf("exit %d, retired %v (%s)", code, f.retired, stderr)
	}
	if !strings.Contains(stderr, "bob/train retired") {
		t.Errorf("stderr %q", stderr)
	}
	// An admin's own container still goes by its project name alone.
	if code, _, _ := runAdmin(t, f, "container-retire thesis"); code != 0 || len(f.retired) != 1 {
		t.Errorf("own retire: exit %d, admin retires %v", code, f.retired)
	}
	for _, line := range []string{"container-retire Bob/train", "container-retire bob/", "container-retire /train", "container-retire bob/train/x"} {
		if code, _, stderr := runAdmin(t, f, line); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2 (%s)", line, code, stderr)
		}
	}
}

func TestAnnounce(t *testing.T) {
	f := &fakeService{}
	code, _, stderr := runAdmin(t, f, "announce the server reboots at 18:00, save your work")
	if code != 0 || len(f.announced) != 1 || f.announced[0] != "boss: the server reboots at 18:00, save your work" {
		t.Fatalf("exit %d, announced %q (%s)", code, f.announced, stderr)
	}
	if !strings.Contains(stderr, "2 open session(s) and 1 .ds01-alerts file(s)") {
		t.Errorf("stderr %q", stderr)
	}
	for _, words := range [][]string{
		{"announce"},
		{"announce", "  "},
		{"announce", "hi\x1b[2Jthere"},
		{"announce", "two\nlines"},
		{"announce", "tab\there"},
		{"announce", "bidi \u202e txt"},
		{"announce", strings.Repeat("x", maxAnnouncement+1)},
	} {
		f := &fakeService{}
		var out, errb strings.Builder
		env := &Env{Service: f, User: store.User{Name: "boss"}, Login: "ds01", Host: "gw", Stdout: &out, Stderr: &errb, Admin: true}
		if code := Run(context.Background(), env, words); code != ExitUsage || len(f.announced) != 0 {
			t.Errorf("announce %q: exit %d, announced %q", words[1:], code, f.announced)
		}
	}
}

func TestUserList(t *testing.T) {
	f := &fakeService{}
	f.users = []session.UserInfo{{User: store.User{Name: "ann", UID: 27101, GID: 27101, Group: "student"}, Keys: 2, Projects: []string{"a", "b"}, Containers: 1}}
	code, out, _ := runAdmin(t, f, "user list")
	if code != 0 || !strings.Contains(out, "ann") || !strings.Contains(out, "27101") || !strings.Contains(out, "student") || !strings.Contains(out, "a,b") {
		t.Errorf("user list: exit %d\n%s", code, out)
	}
	_, out, _ = runAdmin(t, f, "users --format json")
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 || v[0]["keys"] != 2.0 || v[0]["containers_running"] != 1.0 {
		t.Errorf("users --format json: %v %s", err, out)
	}
}

func TestGPUStatusAdminView(t *testing.T) {
	slot := gpu.Slot{UUID: "GPU-1", Index: "0", Name: "A100"}
	f := &fakeService{slots: []gpu.SlotState{{Slot: slot, Holder: &gpu.Holder{User: "ann", Project: "thesis", Since: time.Now()}}}}
	f.all = []session.ContainerInfo{{User: "ann", Project: "thesis", Name: "ds01-ann.thesis-abc", GPUs: []gpu.Slot{slot}}}
	f.queue = []gpu.Waiter{{User: "bob", Project: "train", Slots: 1, Since: time.Now().Add(-5 * time.Minute)}}
	_, out, _ := run(t, f, "", "gpu-status")
	if strings.Contains(out, "ds01-ann.thesis-abc") || strings.Contains(out, "CONTAINER") {
		t.Errorf("a non-admin's gpu-status shows containers:\n%s", out)
	}
	_, out, _ = runAdmin(t, f, "gpu-status")
	for _, want := range []string{"CONTAINER", "ann/thesis", "ds01-ann.thesis-abc", "1. bob/train wants 1 GPU(s), waiting 5m"} {
		if !strings.Contains(out, want) {
			t.Errorf("admin gpu-status lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = runAdmin(t, f, "gpu-status --format json")
	var v struct {
		Slots []map[string]any `json:"slots"`
		Queue []map[string]any `json:"queue"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Slots[0]["container"] != "ds01-ann.thesis-abc" || v.Queue[0]["waiting_s"].(float64) < 299 {
		t.Errorf("admin gpu-status --format json: %v %s", err, out)
	}
}

func TestEvents(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	f := &fakeService{}
	f.events = []store.Event{ // newest first, as the store gives them
		{ID: 2, Time: t0.Add(time.Minute), Type: "container.retire", User: "ann", Project: "thesis", Container: "c1", Duration: 90 * time.Second, Details: "retired by admin boss"},
		{ID: 1, Time: t0, Type: "admin.announce", User: "ann", Details: `{"text":"hi","sessions":2}`},
	}
	code, out, stderr := run(t, f, "", "events")
	if code != 0 || f.filter.User != "ann" || f.filter.Limit != defaultEvents || !f.filter.Since.IsZero() {
		t.Fatalf("events: exit %d, filter %+v (%s)", code, f.filter, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "admin.announce") || !strings.Contains(lines[2], "retired by admin boss") || !strings.Contains(lines[2], "1m30s") {
		t.Errorf("events, oldest first:\n%s", out)
	}
	if len(f.audits) != 0 {
		t.Errorf("a user's own events were audited: %v", f.audits)
	}

	before := time.Now()
	run(t, f, "", "events --since 1h --limit 5")
	after := time.Now()
	if f.filter.Limit != 5 || f.filter.Since.Before(before.Add(-time.Hour)) || f.filter.Since.After(after.Add(-time.Hour)) {
		t.Errorf("--since 1h --limit 5: filter %+v", f.filter)
	}
	for _, line := range []string{"events --since yesterday", "events --limit 0", "events --limit 10001", "events --format xml"} {
		if code, _, _ := run(t, f, "", line); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2", line, code)
		}
	}

	_, out, _ = run(t, f, "", "events --format json")
	recs := strings.Split(strings.TrimSpace(out), "\n")
	if len(recs) != 2 {
		t.Fatalf("events --format json: want one line per event:\n%s", out)
	}
	var r struct {
		Timestamp     string         `json:"timestamp"`
		EventType     string         `json:"event_type"`
		User          string         `json:"user"`
		Source        string         `json:"source"`
		Details       map[string]any `json:"details"`
		SchemaVersion string         `json:"schema_version"`
	}
	if err := json.Unmarshal([]byte(recs[1]), &r); err != nil || r.EventType != "container.retire" || r.User != "ann" || r.SchemaVersion != "1" ||
		r.Timestamp != "2026-12-01T09:01:00.000000Z" || r.Details["project"] != "thesis" || r.Details["duration_s"] != 90.0 {
		t.Errorf("envelope %+v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(recs[0]), &r); err != nil || r.Details["text"] != "hi" {
		t.Errorf("JSON details are an object's fields: %+v, %v", r, err)
	}

	runAdmin(t, f, "events --all")
	if f.filter.User != "" || len(f.audits) != 1 || f.audits[0] != "boss: events" {
		t.Errorf("events --all: filter %+v, audits %v", f.filter, f.audits)
	}
	runAdmin(t, f, "events --user ann")
	if f.filter.User != "ann" {
		t.Errorf("events --user ann: filter %+v", f.filter)
	}
	if code, _, _ := runAdmin(t, f, "events --all --user ann"); code != ExitUsage {
		t.Errorf("--all with --user: exit %d", code)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
		"2d":                   now.Add(-48 * time.Hour),
		"2026-11-30T08:00:00Z": time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1h", "0d", "soon", "2026-13-01"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) accepted", in)
		}
	}
}
