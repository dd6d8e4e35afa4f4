package hostusers

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/store"
)

type fakeNSS struct {
	mu        sync.Mutex
	accounts  map[string]Account
	groups    map[string]int
	members   map[string][]string // group → secondary members
	enumerate bool
	scans     atomic.Int32
}

func (f *fakeNSS) Enumerate(context.Context) ([]Account, error) {
	f.scans.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.enumerate {
		return nil, errors.New("no enumeration")
	}
	var as []Account
	for _, a := range f.accounts {
		as = append(as, a)
	}
	return as, nil
}

func (f *fakeNSS) GroupMembers(_ context.Context, g string) (int, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gid, ok := f.groups[g]
	if !ok {
		return 0, nil, errors.New("no such group")
	}
	return gid, f.members[g], nil
}

func (f *fakeNSS) Lookup(name string) (Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[name]
	if !ok {
		return Account{}, errors.New("unknown user")
	}
	return a, nil
}

func (f *fakeNSS) GroupIDs(name string) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.accounts[name]
	if !ok {
		return nil, errors.New("unknown user")
	}
	ids := []int{a.GID}
	for g, ms := range f.members {
		if slices.Contains(ms, name) {
			ids = append(ids, f.groups[g])
		}
	}
	return ids, nil
}

func (f *fakeNSS) GroupName(gid int) (string, error) { return fmt.Sprintf("g%d", gid), nil }

func (f *fakeNSS) GroupID(g string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gid, ok := f.groups[g]
	if !ok {
		return 0, errors.New("no such group")
	}
	return gid, nil
}

type fakeStore struct {
	mu      sync.Mutex
	users   map[string]store.User
	upserts int
}

func (s *fakeStore) ListUsers(context.Context) ([]store.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var us []store.User
	for _, u := range s.users {
		us = append(us, u)
	}
	return us, nil
}

func (s *fakeStore) UpsertUser(_ context.Context, u store.User) (store.User, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upserts++
	if old, ok := s.users[u.Name]; ok && old.Group != "" {
		u.Group = old.Group
	}
	s.users[u.Name] = u
	return u, true, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t    *testing.T
	nss  *fakeNSS
	st   *fakeStore
	clk  *clock
	logs *bytes.Buffer
	logm sync.Mutex
	d    *Directory
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func newEnv(t *testing.T, cfg Config) *env {
	e := &env{t: t, nss: &fakeNSS{accounts: map[string]Account{}, groups: map[string]int{}, members: map[string][]string{}, enumerate: true},
		st: &fakeStore{users: map[string]store.User{}}, clk: &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}, logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(lockedBuf{&e.logm, e.logs}, nil))
	e.d = newDirectory(cfg, e.nss, e.st, log, e.clk.now)
	return e
}

func (e *env) log() string { e.logm.Lock(); defer e.logm.Unlock(); return e.logs.String() }

// account adds a host account whose authorized_keys holds lines (root
// owns the test files, which StrictModes allows).
func (e *env) account(name string, uid, gid int, lines ...string) {
	home := filepath.Join(e.t.TempDir(), name)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		e.t.Fatal(err)
	}
	e.write(home, lines...)
	e.nss.mu.Lock()
	e.nss.accounts[name] = Account{Name: name, UID: uid, GID: gid, Home: home}
	e.nss.mu.Unlock()
}

func (e *env) write(home string, lines ...string) {
	if err := os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) home(name string) string { a, _ := e.nss.Lookup(name); return a.Home }

func key(t *testing.T) (line, fp string) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := gossh.NewPublicKey(pub)
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))), gossh.FingerprintSHA256(pk)
}

func (e *env) who(fp string) string {
	u, _, err := e.d.UserByKey(context.Background(), fp)
	if err != nil {
		return ""
	}
	return u.Name
}

func TestWhoMayLogIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test files must be owned by root or the account")
	}
	e := newEnv(t, Config{AllowedGroups: []string{"gpu"}})
	e.nss.groups["gpu"] = 2000
	e.nss.members["gpu"] = []string{"sam", "root", "daemon"}
	k := map[string]string{}
	for _, a := range []struct {
		name     string
		uid, gid int
	}{{"pat", 27501, 2000}, {"sam", 27502, 27502}, {"out", 27503, 27503}, {"root", 0, 0}, {"daemon", 1, 1}} {
		line, fp := key(t)
		k[a.name] = fp
		e.account(a.name, a.uid, a.gid, line)
	}
	e.d.Refresh(context.Background())
	for name, want := range map[string]string{"pat": "pat", "sam": "sam", "out": "", "root": "", "daemon": ""} {
		if got := e.who(k[name]); got != want {
			t.Errorf("%s's key: logs in as %q, want %q", name, got, want)
		}
	}
	if in, err := e.d.InGroup("sam", "gpu"); err != nil || !in {
		t.Errorf("InGroup(sam, gpu) = %v, %v", in, err)
	}
	if in, err := e.d.InGroup("out", "gpu"); err != nil || in {
		t.Errorf("InGroup(out, gpu) = %v, %v", in, err)
	}

	// No allowed_groups: any account from min_uid up, never root or a
	// system account.
	e2 := newEnv(t, Config{MinUID: 1000})
	for _, a := range []struct {
		name string
		uid  int
	}{{"pat", 27501}, {"root", 0}, {"daemon", 999}, {"nobody", 65534}} {
		line, fp := key(t)
		k[a.name] = fp
		e2.account(a.name, a.uid, a.uid, line)
	}
	e2.d.Refresh(context.Background())
	for name, want := range map[string]string{"pat": "pat", "root": "", "daemon": "", "nobody": ""} {
		if got := e2.who(k[name]); got != want {
			t.Errorf("no groups: %s's key logs in as %q, want %q", name, got, want)
		}
	}
}

// The store gets the account on its first login, and again only when its
// ids change.
func TestFirstLoginRecordsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{})
	line, fp := key(t)
	e.account("pat", 27501, 27501, line)
	e.d.Refresh(context.Background())
	for range 3 {
		if e.who(fp) != "pat" {
			t.Fatal("pat not found")
		}
	}
	if e.st.upserts != 1 || e.st.users["pat"] != (store.User{Name: "pat", UID: 27501, GID: 27501, Group: "g27501"}) {
		t.Fatalf("upserts %d, store %+v", e.st.upserts, e.st.users)
	}
	e.nss.mu.Lock()
	a := e.nss.accounts["pat"]
	a.GID = 100
	e.nss.accounts["pat"] = a
	e.nss.mu.Unlock()
	e.d.Refresh(context.Background())
	e.who(fp)
	if e.st.upserts != 2 || e.st.users["pat"].GID != 100 {
		t.Errorf("after a gid change: upserts %d, store %+v", e.st.upserts, e.st.users["pat"])
	}
}

// An unknown key rescans at most once per RescanGap, so a key just added
// works at once and random keys cost one scan per gap.
func TestUnknownKeyRescanIsRateLimited(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{RescanGap: 10 * time.Second})
	line, _ := key(t)
	e.account("pat", 27501, 27501, line)
	e.d.Refresh(context.Background())
	base := e.nss.scans.Load()

	_, unknown := key(t)
	for range 20 {
		e.who(unknown)
	}
	if n := e.nss.scans.Load() - base; n != 0 {
		t.Fatalf("%d rescans within the gap after a refresh, want 0", n)
	}
	e.clk.add(11 * time.Second)
	for range 20 {
		e.who(unknown)
	}
	if n := e.nss.scans.Load() - base; n != 1 {
		t.Fatalf("%d rescans for 20 unknown keys, want 1", n)
	}

	// A key the user just added logs in on the next try after the gap.
	added, fp := key(t)
	e.write(e.home("pat"), line, added)
	e.clk.add(11 * time.Second)
	if e.who(fp) != "pat" {
		t.Error("a key added to authorized_keys is not found by the rescan")
	}
}

func TestKeyAccessAndDuplicates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{})
	line, fp := key(t)
	rline, rfp := key(t)
	e.account("pat", 27501, 27501, line, `from="10.0.0.0/8" `+rline, `command="/bin/evil" `+rline+"x")
	e.d.Refresh(context.Background())
	if r, err := e.d.KeyAccess(fp, netip.MustParseAddr("192.0.2.1"), e.clk.now()); err != nil || r != (gateway.Restrictions{}) {
		t.Errorf("plain key: %+v %v", r, err)
	}
	if _, err := e.d.KeyAccess(rfp, netip.MustParseAddr("192.0.2.1"), e.clk.now()); err == nil || !strings.Contains(err.Error(), "from=") {
		t.Errorf("from= mismatch: %v", err)
	}
	if _, err := e.d.KeyAccess(rfp, netip.MustParseAddr("10.1.1.1"), e.clk.now()); err != nil {
		t.Errorf("from= match: %v", err)
	}
	if !strings.Contains(e.log(), "line 3") || !strings.Contains(e.log(), "user=pat") {
		t.Errorf("a refused line is not logged for the admin:\n%s", e.log())
	}

	// Sam copies pat's public key into his own file: pat keeps it.
	e.account("sam", 27502, 27502, line)
	e.d.Refresh(context.Background())
	if got := e.who(fp); got != "pat" {
		t.Errorf("copied key logs in as %q, want pat", got)
	}
	// A key new to two accounts at once is nobody's.
	both, bfp := key(t)
	e.write(e.home("pat"), line, both)
	e.write(e.home("sam"), both)
	e.d.Refresh(context.Background())
	if got := e.who(bfp); got != "" {
		t.Errorf("a key in two new files logs in as %q", got)
	}
	if !strings.Contains(e.log(), "one key in several accounts") {
		t.Errorf("duplicate not logged:\n%s", e.log())
	}
}

// An unsafe file refuses that user's keys, with one log line per change.
func TestUnsafeFileLoggedOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{})
	line, fp := key(t)
	e.account("pat", 27501, 27501, line)
	if err := os.Chmod(filepath.Join(e.home("pat"), ".ssh", "authorized_keys"), 0o664); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.d.Refresh(context.Background())
	}
	if e.who(fp) != "" {
		t.Error("a group-writable authorized_keys let its key in")
	}
	if n := strings.Count(e.log(), "writable by group or others"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, e.log())
	}
}

// BenchmarkUserByKey is host mode's auth lookup for a known key: the map,
// the synced check and KeyAccess.
func BenchmarkUserByKey(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	e := newEnv(&testing.T{}, Config{})
	var fp string
	for i := range 50 {
		line, f := key(&testing.T{})
		home := filepath.Join(b.TempDir(), fmt.Sprint(i))
		os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
		os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(line+"\n"), 0o600)
		e.nss.accounts[fmt.Sprint("u", i)] = Account{Name: fmt.Sprint("u", i), UID: 27500 + i, GID: 27500 + i, Home: home}
		fp = f
	}
	e.d.Refresh(context.Background())
	ctx := context.Background()
	remote := netip.MustParseAddr("192.0.2.1")
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := e.d.UserByKey(ctx, fp); err != nil {
			b.Fatal(err)
		}
		if _, err := e.d.KeyAccess(fp, remote, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}

// A resource group the admin recorded in the store is the one logins get;
// a known account with unchanged ids costs no store write.
func TestStoreGroupWins(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{})
	line, fp := key(t)
	e.account("pat", 27501, 27501, line)
	e.st.users["pat"] = store.User{Name: "pat", UID: 27501, GID: 27501, Group: "researcher"}
	e.d.Refresh(context.Background())
	u, _, err := e.d.UserByKey(context.Background(), fp)
	if err != nil || u.Group != "researcher" || e.st.upserts != 0 {
		t.Errorf("got %+v, %v after %d upserts; want group researcher, no write", u, err, e.st.upserts)
	}
}

// Without enumeration (SSSD's default), allowed_groups' listed members
// are still found; an account in no group list and unknown to the store
// is not.
func TestNoEnumeration(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	e := newEnv(t, Config{AllowedGroups: []string{"gpu"}})
	e.nss.enumerate = false
	e.nss.groups["gpu"] = 2000
	e.nss.members["gpu"] = []string{"sam"}
	sam, samFP := key(t)
	pat, patFP := key(t)
	e.account("sam", 27502, 27502, sam)
	e.account("pat", 27501, 2000, pat) // in gpu by primary group only
	e.d.Refresh(context.Background())
	if e.who(samFP) != "sam" {
		t.Error("a listed member is not found without enumeration")
	}
	if e.who(patFP) != "" {
		t.Error("a primary-only member was found without enumeration: the README's limit is wrong")
	}
	if !strings.Contains(e.log(), "cannot enumerate accounts") {
		t.Errorf("the enumeration failure is not logged:\n%s", e.log())
	}
}
