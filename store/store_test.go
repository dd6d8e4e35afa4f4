package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// childEnv makes the test binary act as a second process on a shared
// database (see TestMain and TestCrossProcess).
const childEnv = "STORE_TEST_CHILD_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		if err := runChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "ds01.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// newKey returns a fresh ed25519 key as an authorized_keys line with comment.
func newKey(t *testing.T, comment string) (line string, pub ssh.PublicKey) {
	t.Helper()
	pk, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err = ssh.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	return line, pub
}

func TestOpenPragmas(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	// Hold several connections at once so the pool has to open more than
	// one: the pragmas must be on every connection, not just the first.
	for i := range 3 {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, tc := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"busy_timeout", "5000"},
			{"foreign_keys", "1"},
			{"synchronous", "1"}, // NORMAL
		} {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("conn %d: PRAGMA %s: %v", i, tc.pragma, err)
			}
			if got != tc.want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, tc.pragma, got, tc.want)
			}
		}
	}
}

func TestOpenFileModes(t *testing.T) {
	s, path := openTest(t)
	// A write makes sure the -wal and -shm files exist too.
	if err := s.AddEvent(t.Context(), Event{Type: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(p), got)
		}
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode %o, want 700", got)
	}
}

func TestOpenRejectsBadPath(t *testing.T) {
	for _, p := range []string{"", filepath.Join(t.TempDir(), "a?b.db")} {
		if s, err := Open(t.Context(), p); err == nil {
			_ = s.Close()
			t.Errorf("Open(%q) succeeded, want error", p)
		}
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	if err := s.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if _, err := s2.GetUser(ctx, "alice"); err != nil {
			t.Errorf("after reopen: %v", err)
		}
		ms, err := loadMigrations()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s2.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) {
			t.Errorf("schema_migrations has %d rows, want %d", n, len(ms))
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentOpen opens a fresh file from several goroutines at once, as
// the server and a CLI command may do on first start.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds01.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestTwoStoresSeeEachOther(t *testing.T) {
	a, path := openTest(t)
	ctx := t.Context()
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	line, pub := newKey(t, "")
	if err := a.AddUser(ctx, User{Name: "alice", UID: 1001, GID: 1001}, []Key{{AuthorizedKey: line}}); err != nil {
		t.Fatal(err)
	}
	if u, _, err := b.UserByKey(ctx, ssh.FingerprintSHA256(pub)); err != nil || u.Name != "alice" {
		t.Fatalf("b.UserByKey = %v, %v; want alice", u.Name, err)
	}
	if err := b.RemoveUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetUser(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a.GetUser after b removed: %v, want ErrNotFound", err)
	}

	// Interleaved writers on both handles must all succeed: the busy
	// timeout and IMMEDIATE transactions serialise them instead of failing.
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 50 {
		for j, s := range []*Store{a, b} {
			wg.Go(func() {
				name := fmt.Sprintf("u%d-%d", j, i)
				errs <- s.AddUser(ctx, User{Name: name, UID: 2000 + 100*j + i, GID: 100}, nil)
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	us, err := a.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 100 {
		t.Errorf("ListUsers: %d users, want 100", len(us))
	}
}

// TestCrossProcess runs a second OS process on the same file while this one
// keeps it open and writes to it, as the CLI does next to the server.
func TestCrossProcess(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	if err := s.AddUser(ctx, User{Name: "parent", UID: 1001, GID: 1001}, nil); err != nil {
		t.Fatal(err)
	}
	parentID, err := s.InstanceID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range childEvents {
		if err := s.AddEvent(ctx, Event{Type: "parent.write", Details: fmt.Sprint(i)}); err != nil {
			t.Errorf("parent AddEvent: %v", err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}

	if got := strings.TrimSpace(out.String()); got != parentID {
		t.Errorf("child InstanceID %q, parent %q", got, parentID)
	}
	if _, err := s.GetUser(ctx, "child"); err != nil {
		t.Errorf("parent does not see child's user: %v", err)
	}
	for _, typ := range []string{"parent.write", "child.write"} {
		es, err := s.ListEvents(ctx, EventFilter{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != childEvents {
			t.Errorf("%s: %d events, want %d", typ, len(es), childEvents)
		}
	}
}

const childEvents = 100

func runChild(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.GetUser(ctx, "parent"); err != nil {
		return fmt.Errorf("parent's user not visible: %w", err)
	}
	if err := s.AddUser(ctx, User{Name: "child", UID: 1002, GID: 1002}, nil); err != nil {
		return err
	}
	for i := range childEvents {
		if err := s.AddEvent(ctx, Event{Type: "child.write", Details: fmt.Sprint(i)}); err != nil {
			return err
		}
	}
	id, err := s.InstanceID(ctx)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}
