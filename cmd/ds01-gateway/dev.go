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
// they have none, and prints the command to try.
func devRegister(ctx context.Context, st *store.Store, cfg Config, addr string) error {
	who, err := invokingUser()
	if err != nil {
		return err
	}
	if err := session.ValidateUser(who.Username); err != nil {
		return fmt.Errorf("--dev: %w", err)
	}
	uid, _ := strconv.Atoi(who.Uid)
	gid, _ := strconv.Atoi(who.Gid)
	sshDir := filepath.Join(who.HomeDir, ".ssh")
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
	if _, err := st.GetUser(ctx, who.Username); errors.Is(err, store.ErrNotFound) {
		if err := st.AddUser(ctx, store.User{Name: who.Username, UID: uid, GID: gid}, keys); err != nil {
			return fmt.Errorf("--dev: register %s: %w", who.Username, err)
		}
	} else if err != nil {
		return err
	} else {
		for _, k := range keys {
			if err := st.AddKey(ctx, who.Username, k); err != nil && !errors.Is(err, store.ErrDuplicate) {
				return fmt.Errorf("--dev: add key: %w", err)
			}
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		host = "localhost"
	}
	ws, _ := session.ExpandRoot(cfg.WorkspaceRoot, who.Username)
	fmt.Fprintf(os.Stderr, "\nDS01 gateway is up. User %s (uid %d) is registered with %d key(s) from %s.\n", who.Username, uid, len(keys), sshDir)
	fmt.Fprintf(os.Stderr, "Try:\n\n    ssh -p %s hello@%s\n\nProject \"hello\" is created on first login; its files live in %s/hello.\n\n", port, host, ws)
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
	os.Lchown(sshDir, uid, gid)
	key := filepath.Join(sshDir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ds01-dev", "-f", key).CombinedOutput()
	if err != nil {
		return fmt.Errorf("--dev: ssh-keygen: %v: %s", err, out)
	}
	os.Lchown(key, uid, gid)
	os.Lchown(key+".pub", uid, gid)
	fmt.Fprintf(os.Stderr, "made a new SSH key %s\n", key)
	return nil
}
