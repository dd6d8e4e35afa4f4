package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// devRegister is `serve --dev`: it registers the invoking user (the one
// behind sudo, if any) with their ~/.ssh/*.pub, making an ed25519 key if
// they have none, and prints the command to try. Root, or a system
// account, is never registered as itself, or containers would run as it:
// its keys go to an unprivileged development user (devAccount) instead.
func devRegister(ctx context.Context, st *store.Store, cfg Config, addr string) error {
	who, err := invokingUser()
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(who.Uid)
	gid, _ := strconv.Atoi(who.Gid)
	name, regUID, regGID := who.Username, uid, gid
	sshDir := filepath.Join(who.HomeDir, ".ssh")
	var note string
	if checkIDs(uid, gid, false) != nil {
		if os.Getenv("SUDO_USER") == "" {
			// The account's own keys, wherever its session keeps them.
			if home, err := os.UserHomeDir(); err == nil {
				sshDir = filepath.Join(home, ".ssh")
			}
		}
		if err := dropRootDevUser(ctx, st, who.Username, uid); err != nil {
			return err
		}
		if name, regUID, regGID, err = devAccount(ctx, st); err != nil {
			return err
		}
		note = fmt.Sprintf(" (you run as %s; containers never do)", who.Username)
	}
	if err := session.ValidateUser(name); err != nil {
		return fmt.Errorf("--dev: %w", err)
	}
	pubs, _ := filepath.Glob(filepath.Join(sshDir, "*.pub"))
	if len(pubs) == 0 {
		if err := makeKey(sshDir, uid, gid); err != nil {
			return err
		}
		pubs, _ = filepath.Glob(filepath.Join(sshDir, "*.pub"))
	}
	var keys []store.Key
	for _, p := range pubs {
		ks, err := readKeys(p)
		if err != nil {
			continue // not every .pub in ~/.ssh is a key of ours to use
		}
		keys = append(keys, ks...)
	}
	if len(keys) == 0 {
		return fmt.Errorf("--dev: no usable public key in %s", sshDir)
	}
	if _, err := st.GetUser(ctx, name); errors.Is(err, store.ErrNotFound) {
		if err := st.AddUser(ctx, store.User{Name: name, UID: regUID, GID: regGID}, keys); err != nil {
			return fmt.Errorf("--dev: register %s: %w", name, err)
		}
	} else if err != nil {
		return err
	} else {
		for _, k := range keys {
			if err := st.AddKey(ctx, name, k); err != nil && !errors.Is(err, store.ErrDuplicate) {
				return fmt.Errorf("--dev: add key: %w", err)
			}
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		host = "localhost"
	}
	ws, _ := session.ExpandRoot(cfg.WorkspaceRoot, name)
	fmt.Fprintf(os.Stderr, "\nDS01 gateway is up. User %s (uid %d) is registered with %d key(s) from %s%s.\n", name, regUID, len(keys), sshDir, note)
	fmt.Fprintf(os.Stderr, "Try:\n\n    ssh -p %s hello@%s\n\nProject \"hello\" is created on first login; its files live in %s/hello.\n\n", port, host, ws)
	return nil
}

// devUser is the account `serve --dev` registers for root's keys.
const devUser = "dev"

// devUIDs is where devAccount looks for a uid: above the range adduser
// hands out (1000-59999), so no host account created later takes it.
const devUIDFirst, devUIDLast = 60000, 64999

// devAccount returns the development user's name and ids: the store's if it
// has one; a host account of that name if it is an ordinary one; else the
// first uid of devUIDs that no host account or group, and no registered
// user, uses.
func devAccount(ctx context.Context, st *store.Store) (name string, uid, gid int, err error) {
	if u, err := st.GetUser(ctx, devUser); err == nil {
		return u.Name, u.UID, u.GID, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", 0, 0, err
	}
	if hu, err := user.Lookup(devUser); err == nil {
		uid, _ := strconv.Atoi(hu.Uid)
		gid, _ := strconv.Atoi(hu.Gid)
		if err := checkIDs(uid, gid, false); err != nil {
			return "", 0, 0, fmt.Errorf("--dev: host account %s: %w", devUser, err)
		}
		return devUser, uid, gid, nil
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return "", 0, 0, err
	}
	taken := map[int]bool{}
	for _, u := range users {
		taken[u.UID] = true
	}
	id, ok := freeID(devUIDFirst, devUIDLast, func(id int) bool {
		if taken[id] {
			return false
		}
		_, uerr := user.LookupId(strconv.Itoa(id))
		_, gerr := user.LookupGroupId(strconv.Itoa(id))
		var nu user.UnknownUserIdError
		var ng user.UnknownGroupIdError
		return errors.As(uerr, &nu) && errors.As(gerr, &ng)
	})
	if !ok {
		return "", 0, 0, fmt.Errorf("--dev: no free uid in %d-%d for user %s", devUIDFirst, devUIDLast, devUser)
	}
	return devUser, id, id, nil
}

// freeID returns the first id in [first, last] that free accepts.
func freeID(first, last int, free func(int) bool) (int, bool) {
	for id := first; id <= last; id++ {
		if free(id) {
			return id, true
		}
	}
	return 0, false
}

// dropRootDevUser removes the user an older `serve --dev` registered for
// root with uid 0, so its keys can move to the development user. Only that
// exact record goes: the account's name and uid 0.
func dropRootDevUser(ctx context.Context, st *store.Store, name string, uid int) error {
	u, err := st.GetUser(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if u.UID != 0 || uid != 0 {
		return nil
	}
	if err := st.RemoveUser(ctx, name); err != nil {
		return fmt.Errorf("--dev: remove user %s (uid 0): %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "removed user %s (uid 0), registered by an older --dev: containers must not run as root\n", name)
	return nil
}

func invokingUser() (*user.User, error) {
	if name := os.Getenv("SUDO_USER"); name != "" && os.Geteuid() == 0 {
		return user.Lookup(name)
	}
	return user.Current()
}

func makeKey(sshDir string, uid, gid int) error {
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(sshDir, uid, gid); err != nil {
		return fmt.Errorf("--dev: %w", err)
	}
	key := filepath.Join(sshDir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ds01-dev", "-f", key).CombinedOutput()
	if err != nil {
		return fmt.Errorf("--dev: ssh-keygen: %v: %s", err, out)
	}
	for _, p := range []string{key, key + ".pub"} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("--dev: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "made a new SSH key %s\n", key)
	return nil
}
