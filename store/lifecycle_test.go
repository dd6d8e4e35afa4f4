package store

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func TestLifecycleState(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	if _, err := s.Lifecycle(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lifecycle of nothing: %v", err)
	}
	if err := s.SaveLifecycle(ctx, "c1", []byte(`{"last_active":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLifecycle(ctx, "c1", []byte(`{"last_active":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLifecycle(ctx, "c2", []byte("\x00\xffbinary")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Lifecycle(ctx, "c1"); err != nil || string(got) != `{"last_active":2}` {
		t.Errorf("Lifecycle(c1) = %q, %v", got, err)
	}
	if got, err := s.Lifecycle(ctx, "c2"); err != nil || string(got) != "\x00\xffbinary" {
		t.Errorf("Lifecycle(c2) = %q, %v", got, err)
	}
	if err := s.SaveLifecycle(ctx, "", nil); err == nil {
		t.Error("SaveLifecycle with no container id")
	}
	for range 2 { // deleting twice is fine
		if err := s.DeleteLifecycle(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Lifecycle(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lifecycle after delete: %v", err)
	}
	if _, err := s.Lifecycle(ctx, "c2"); err != nil {
		t.Errorf("deleting c1 lost c2: %v", err)
	}
}

func TestNotices(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	t0 := time.Now().Add(-time.Hour).Round(0)
	add := func(n Notice, seen bool) int64 {
		t.Helper()
		id, err := s.AddNotice(ctx, n, seen)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Out of order in time: the list is by time.
	b := add(Notice{Time: t0.Add(2 * time.Minute), User: "alice", Project: "p", Container: "c1", Text: "ds01: p: stopped: idle for 30m"}, false)
	a := add(Notice{Time: t0.Add(time.Minute), User: "alice", Project: "p", Container: "c1", Text: "ds01: p: idle for 24m"}, false)
	add(Notice{Time: t0, User: "alice", Text: "printed live"}, true)
	add(Notice{Time: t0, User: "bob", Text: "bob's"}, false)
	if _, err := s.AddNotice(ctx, Notice{User: "alice"}, false); err == nil {
		t.Error("AddNotice with no text")
	}

	ns, err := s.UnseenNotices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := []Notice{
		{ID: a, Time: t0.Add(time.Minute).UTC(), User: "alice", Project: "p", Container: "c1", Text: "ds01: p: idle for 24m"},
		{ID: b, Time: t0.Add(2 * time.Minute).UTC(), User: "alice", Project: "p", Container: "c1", Text: "ds01: p: stopped: idle for 30m"},
	}
	if len(ns) != 2 || ns[0] != want[0] || ns[1] != want[1] {
		t.Fatalf("UnseenNotices = %+v\nwant %+v", ns, want)
	}
	if err := s.MarkNoticesSeen(ctx, a, b, 9999); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkNoticesSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.UnseenNotices(ctx, "alice"); err != nil || len(ns) != 0 {
		t.Errorf("after marking: %+v, %v", ns, err)
	}
	if ns, err := s.UnseenNotices(ctx, "bob"); err != nil || len(ns) != 1 || ns[0].Text != "bob's" {
		t.Errorf("bob's: %+v, %v", ns, err)
	}
}

func TestUnseenNoticesNewest50(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	t0 := time.Now().Add(-time.Hour)
	for i := range 60 {
		if _, err := s.AddNotice(ctx, Notice{Time: t0.Add(time.Duration(i) * time.Second), User: "alice", Text: fmt.Sprint("n", i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := s.UnseenNotices(ctx, "alice")
	if err != nil || len(ns) != 50 || ns[0].Text != "n10" || ns[49].Text != "n59" {
		t.Fatalf("UnseenNotices = %d notices from %v to %v, %v", len(ns), ns[0].Text, ns[len(ns)-1].Text, err)
	}
}

func TestNoticesPruned(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	old := time.Now().Add(-NoticeRetention - time.Hour)
	if _, err := s.AddNotice(ctx, Notice{Time: old, User: "alice", Text: "long ago"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNotice(ctx, Notice{Time: time.Now().Add(-NoticeRetention + time.Hour), User: "alice", Text: "29 days ago"}, false); err != nil {
		t.Fatal(err)
	}
	// AddNotice prunes now and then, without being asked.
	for range pruneEvery {
		if _, err := s.AddNotice(ctx, Notice{User: "bob", Text: "x"}, true); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := s.UnseenNotices(ctx, "alice")
	if err != nil || len(ns) != 1 || ns[0].Text != "29 days ago" {
		t.Fatalf("after pruning: %+v, %v", ns, err)
	}
	if err := s.PruneNotices(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.UnseenNotices(ctx, "alice"); err != nil || len(ns) != 0 {
		t.Errorf("after PruneNotices(now): %+v, %v", ns, err)
	}
}

// TestMigrateFromV4 opens a database of the previous release: its rows stay,
// the lifecycle tables appear, and it stays in WAL mode.
func TestMigrateFromV4(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ds01.db")
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if ms[3].version != 4 || ms[4].name != "0005_lifecycle.sql" {
		t.Fatalf("migrations %v", ms)
	}
	db, err := sql.Open("sqlite", path+"?"+dsnParams().Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := applyMigrations(ctx, db, ms[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO users (name, uid, gid, created_at) VALUES ('alice', 1001, 1001, 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `SELECT 1 FROM notices`); err == nil {
		t.Fatal("a v4 database has notices")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Errorf("v4 user lost: %v", err)
	}
	if _, err := s.AddNotice(ctx, Notice{User: "alice", Text: "hi"}, false); err != nil {
		t.Error(err)
	}
	if err := s.SaveLifecycle(ctx, "c", []byte("{}")); err != nil {
		t.Error(err)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	var v int
	all, _ := loadMigrations()
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || len(all) == 0 || v != all[len(all)-1].version {
		t.Errorf("schema version %d, %v", v, err)
	}
}
