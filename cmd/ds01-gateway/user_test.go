package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

func TestCheckIDs(t *testing.T) {
	for _, tc := range []struct {
		uid, gid int
		system   bool
		want     string // "" means accepted
	}{
		{1001, 1001, false, ""},
		{1001, 100, false, ""}, // Debian's users group
		{70000, 70000, false, ""},
		{0, 1001, false, "--uid 0 is root's"},
		{0, 0, true, "--uid 0 is root's"},
		{1001, 0, false, "--gid 0 is root's"},
		{1001, 0, true, "--gid 0 is root's"},
		{33, 33, false, "--uid 33 belongs to a system account"},
		{1001, 27, false, "--gid 27 belongs to a system account"},
		{65534, 65534, false, "--uid 65534 belongs to a system account"},
		{999, 999, true, ""},
		{1 << 32, 1001, false, "not a valid uid"},
	} {
		err := checkIDs(tc.uid, tc.gid, tc.system)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkIDs(%d, %d, %v) = %v, want %q", tc.uid, tc.gid, tc.system, err, tc.want)
		}
	}
}

// userAdd refuses root and system ids with an error, before the store is
// touched.
func TestUserAddRefusesRootIDs(t *testing.T) {
	dir := t.TempDir()
	pub := writeTestKey(t, dir, "k")
	for _, args := range [][]string{
		{"alice", "--uid", "0", "--key-file", pub},
		{"alice", "--uid", "1001", "--gid", "0", "--key-file", pub},
		{"alice", "--uid", "0", "--system", "--key-file", pub},
		{"alice", "--uid", "500", "--key-file", pub},
	} {
		err := userAdd(append(args, "--data-dir", dir))
		if err == nil || errors.Is(err, errUsage) {
			t.Errorf("user add %q: %v, want a refusal", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ds01.db")); err == nil {
		t.Error("a refused user add created the store")
	}
	if err := userAdd([]string{"svc", "--uid", "500", "--system", "--key-file", pub, "--data-dir", dir}); err != nil {
		t.Errorf("--system uid 500: %v", err)
	}
}

func writeTestKey(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput(); err != nil {
		t.Skipf("ssh-keygen: %v %s", err, out)
	}
	return path + ".pub"
}

func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "ds01.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// `serve --dev` run by root registers root's keys for an unprivileged
// user, and moves them from the uid-0 user an older --dev registered.
func TestDevRegisterAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SUDO_USER", "")
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub := writeTestKey(t, filepath.Join(home, ".ssh"), "id_ed25519")
	keys, err := readKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	st := openTestStore(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// What an older --dev left: root, uid 0, with these keys.
	if err := st.AddUser(ctx, store.User{Name: me.Username, UID: 0, GID: 0}, keys); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.WorkspaceRoot = filepath.Join(t.TempDir(), "{user}")
	for range 2 { // a second start finds the same user
		if err := devRegister(ctx, st, cfg, "127.0.0.1:2222"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GetUser(ctx, me.Username); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the uid-0 user %s is still registered (%v)", me.Username, err)
	}
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(keys[0].AuthorizedKey))
	if err != nil {
		t.Fatal(err)
	}
	u, k, err := st.UserByKey(ctx, gossh.FingerprintSHA256(pk))
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != devUser || u.UID < devUIDFirst || u.UID > devUIDLast || u.GID != u.UID || k.AuthorizedKey != keys[0].AuthorizedKey {
		t.Errorf("root's key belongs to %+v, want %s with a uid in %d-%d", u, devUser, devUIDFirst, devUIDLast)
	}
	if _, err := user.LookupId(strconv.Itoa(u.UID)); err == nil {
		t.Errorf("uid %d belongs to a host account", u.UID)
	}
}

// The development uid skips ids that host accounts or registered users
// hold.
func TestDevAccountSkipsTakenIDs(t *testing.T) {
	ctx := context.Background()
	if _, err := user.Lookup(devUser); err == nil {
		t.Skipf("this host has an account %s", devUser)
	}
	st := openTestStore(t)
	_, first, _, err := devAccount(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser(ctx, store.User{Name: "other", UID: first, GID: first}, nil); err != nil {
		t.Fatal(err)
	}
	_, next, _, err := devAccount(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if next <= first {
		t.Errorf("uid %d taken by a registered user was chosen again (%d)", first, next)
	}
	if id, ok := freeID(1, 10, func(id int) bool { return id > 3 }); !ok || id != 4 {
		t.Errorf("freeID = %d, %v", id, ok)
	}
	if _, ok := freeID(1, 3, func(int) bool { return false }); ok {
		t.Error("freeID found an id where none is free")
	}
}
