package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestUserRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	created := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	line, pub := newKey(t, "alice@laptop")
	want := User{Name: "alice", UID: 1001, GID: 1002, Group: "lab", CreatedAt: created}
	if err := s.AddUser(ctx, want, []Key{{AuthorizedKey: line}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location %v, want UTC", got.CreatedAt.Location())
	}
	if !got.CreatedAt.Equal(created) {
		t.Errorf("CreatedAt %v, want %v", got.CreatedAt, created)
	}
	got.CreatedAt = want.CreatedAt
	if got != want {
		t.Errorf("GetUser = %+v, want %+v", got, want)
	}

	keys, err := s.ListKeys(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("ListKeys: %d keys, want 1", len(keys))
	}
	k := keys[0]
	wantLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if k.User != "alice" || k.Type != ssh.KeyAlgoED25519 || k.Fingerprint != ssh.FingerprintSHA256(pub) ||
		k.AuthorizedKey != wantLine || k.Comment != "alice@laptop" || k.CreatedAt.IsZero() {
		t.Errorf("ListKeys[0] = %+v", k)
	}

	u, k2, err := s.UserByKey(ctx, ssh.FingerprintSHA256(pub))
	if err != nil {
		t.Fatal(err)
	}
	wantKey := k
	wantKey.AddedVia, wantKey.AddedFrom = "", "" // UserByKey leaves them out (see its comment)
	if u.Name != "alice" || u.UID != 1001 || k2 != wantKey {
		t.Errorf("UserByKey = %+v, %+v", u, k2)
	}
}

func TestAddUserDefaultsCreatedAt(t *testing.T) {
	s, _ := openTest(t)
	before := time.Now()
	if err := s.AddUser(t.Context(), User{Name: "bob", UID: 1, GID: 1}, nil); err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUser(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.CreatedAt.Before(before.Add(-time.Second)) || u.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt %v not about now", u.CreatedAt)
	}
}

func TestAddUserErrors(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	aliceKey, _ := newKey(t, "")
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, []Key{{AuthorizedKey: aliceKey}}); err != nil {
		t.Fatal(err)
	}
	fresh, _ := newKey(t, "")
	fresh2, fresh2Pub := newKey(t, "")

	tests := []struct {
		name    string
		user    User
		keys    []Key
		wantErr error // nil: any non-nil error
	}{
		{"duplicate name", User{Name: "alice", UID: 2000}, nil, ErrDuplicate},
		{"duplicate uid", User{Name: "bob", UID: 1001}, nil, ErrDuplicate},
		{"key registered to another user", User{Name: "bob", UID: 2000}, []Key{{AuthorizedKey: fresh}, {AuthorizedKey: aliceKey}}, ErrDuplicate},
		{"same key twice", User{Name: "bob", UID: 2000}, []Key{{AuthorizedKey: fresh}, {AuthorizedKey: fresh}}, ErrDuplicate},
		{"empty name", User{UID: 2000}, nil, nil},
		{"negative uid", User{Name: "bob", UID: -1}, nil, nil},
		{"unparsable key", User{Name: "bob", UID: 2000}, []Key{{AuthorizedKey: "ssh-ed25519 notbase64"}}, nil},
		{"fingerprint of another key", User{Name: "bob", UID: 2000}, []Key{{AuthorizedKey: fresh, Fingerprint: ssh.FingerprintSHA256(fresh2Pub)}}, nil},
		{"wrong type", User{Name: "bob", UID: 2000}, []Key{{AuthorizedKey: fresh2, Type: ssh.KeyAlgoRSA}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddUser(ctx, tc.user, tc.keys)
			if err == nil {
				t.Fatal("AddUser succeeded, want error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("AddUser: %v, want %v", err, tc.wantErr)
			}
			// A failed AddUser must leave nothing behind.
			if _, err := s.GetUser(ctx, "bob"); !errors.Is(err, ErrNotFound) {
				t.Errorf("bob exists after failed AddUser: %v", err)
			}
		})
	}
	keys, err := s.ListKeys(ctx, "alice")
	if err != nil || len(keys) != 1 {
		t.Errorf("alice's keys after failures: %d, %v", len(keys), err)
	}
}

func TestAddKey(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, User{Name: "bob", UID: 1002, GID: 1002}, nil); err != nil {
		t.Fatal(err)
	}
	k1, pub1 := newKey(t, "one")
	k2, _ := newKey(t, "")
	if err := s.AddKey(ctx, "alice", Key{AuthorizedKey: k1}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddKey(ctx, "alice", Key{AuthorizedKey: k2, Comment: "two"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		user    string
		key     string
		wantErr error
	}{
		{"same key same user", "alice", k1, ErrDuplicate},
		{"same key other user", "bob", k1, ErrDuplicate},
		{"missing user", "nobody", k2, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AddKey(ctx, tc.user, Key{AuthorizedKey: tc.key}); !errors.Is(err, tc.wantErr) {
				t.Fatalf("AddKey: %v, want %v", err, tc.wantErr)
			}
		})
	}

	keys, err := s.ListKeys(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Comment != "one" || keys[1].Comment != "two" {
		t.Errorf("ListKeys(alice) = %+v", keys)
	}
	if keys, err := s.ListKeys(ctx, "bob"); err != nil || len(keys) != 0 {
		t.Errorf("ListKeys(bob) = %v, %v; want empty", keys, err)
	}
	if _, err := s.ListKeys(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListKeys(nobody): %v, want ErrNotFound", err)
	}
	if u, _, err := s.UserByKey(ctx, ssh.FingerprintSHA256(pub1)); err != nil || u.Name != "alice" {
		t.Errorf("UserByKey = %v, %v", u.Name, err)
	}
}

func TestRemoveUser(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	line, pub := newKey(t, "")
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, []Key{{AuthorizedKey: line}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateProject(ctx, Project{User: "alice", Name: "p", Workspace: "/w"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvent(ctx, Event{Type: "session.start", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutContainer(ctx, Container{ID: "c1", User: "alice", Project: "p"}); err != nil {
		t.Fatal(err)
	}

	if err := s.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveUser(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RemoveUser: %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetUser: %v, want ErrNotFound", err)
	}
	if _, _, err := s.UserByKey(ctx, ssh.FingerprintSHA256(pub)); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByKey after remove: %v, want ErrNotFound", err)
	}
	// History stays.
	if ps, err := s.ListProjects(ctx, "alice"); err != nil || len(ps) != 1 {
		t.Errorf("projects after remove: %v, %v", ps, err)
	}
	if es, err := s.ListEvents(ctx, EventFilter{User: "alice"}); err != nil || len(es) != 1 {
		t.Errorf("events after remove: %v, %v", es, err)
	}
	if cs, err := s.ListContainers(ctx, false); err != nil || len(cs) != 1 {
		t.Errorf("containers after remove: %v, %v", cs, err)
	}
	// The name, uid and key are free again.
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, []Key{{AuthorizedKey: line}}); err != nil {
		t.Errorf("re-adding removed user: %v", err)
	}
}

func TestListUsersOrdered(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("empty ListUsers = %v, %v", us, err)
	}
	for i, n := range []string{"carol", "alice", "bob"} {
		if err := s.AddUser(ctx, User{Name: n, UID: 1000 + i, GID: 100}, nil); err != nil {
			t.Fatal(err)
		}
	}
	us, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range us {
		names = append(names, u.Name)
	}
	if got := strings.Join(names, ","); got != "alice,bob,carol" {
		t.Errorf("ListUsers order %s", got)
	}
}

func TestUserByKeyNotFound(t *testing.T) {
	s, _ := openTest(t)
	if _, _, err := s.UserByKey(t.Context(), "SHA256:nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserByKey: %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(t.Context(), "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetUser: %v, want ErrNotFound", err)
	}
}

// TestMapErrConstraint checks the backstop: a constraint violation that
// slips past the explicit checks still reads as ErrDuplicate.
func TestMapErrConstraint(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('k', 'v')`); err != nil {
		t.Fatal(err)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('k', 'v')`)
	if err = mapErr(err); !errors.Is(err, ErrDuplicate) {
		t.Errorf("mapErr(primary key violation) = %v, want ErrDuplicate", err)
	}
	if err := s.AddUser(ctx, User{Name: "a", UID: 1}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO users (name, uid, gid, created_at) VALUES ('b', 1, 1, 0)`)
	if err = mapErr(err); !errors.Is(err, ErrDuplicate) {
		t.Errorf("mapErr(unique violation) = %v, want ErrDuplicate", err)
	}
	if err := mapErr(errors.New("other")); errors.Is(err, ErrDuplicate) {
		t.Error("mapErr(other) is ErrDuplicate")
	}
}
