package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// userCmd manages accounts. It opens the same store as a running gateway
// (SQLite in WAL mode), so changes apply on the next login.
func userCmd(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "add":
		return userAdd(args[1:])
	case "key":
		if len(args) < 2 || args[1] != "add" {
			return errUsage
		}
		return userKeyAdd(args[2:])
	case "list", "ls":
		return userList(args[1:])
	case "remove", "rm":
		return userRemove(args[1:])
	}
	return errUsage
}

func openStore(ctx context.Context, c common) (*store.Store, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	dir, err := cfg.absDataDir()
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, filepath.Join(dir, "ds01.db"))
}

func userAdd(args []string) error {
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	var c common
	c.register(fs)
	uid := fs.Int("uid", -1, "Linux uid the user's containers run as")
	gid := fs.Int("gid", -1, "Linux gid (default: the uid)")
	group := fs.String("group", "", "resource group (student, researcher, ...)")
	keyFile := fs.String("key-file", "", "public key file (authorized_keys format, one key or more)")
	system := fs.Bool("system", false, "allow a uid or gid below 1000 (a system account; never 0)")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 || *uid < 0 || *keyFile == "" {
		return errUsage
	}
	name := pos[0]
	if err := session.ValidateUser(name); err != nil {
		return err
	}
	if *gid < 0 {
		*gid = *uid
	}
	if err := checkIDs(*uid, *gid, *system); err != nil {
		return err
	}
	if *group != "" && !groupRE.MatchString(*group) {
		return fmt.Errorf("--group %q: use 1-32 lowercase letters, digits, '-' and '_'", *group)
	}
	keys, err := readKeys(*keyFile)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.AddUser(ctx, store.User{Name: name, UID: *uid, GID: *gid, Group: *group}, keys); err != nil {
		return fmt.Errorf("add user %s: %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "added user %s (uid %d, gid %d) with %d key(s)\n", name, *uid, *gid, len(keys))
	return nil
}

// firstUserID is where Debian (adduser, login.defs) starts the ids of
// people's accounts; below it are system accounts and groups (daemon,
// shadow, disk, docker...).
const firstUserID = 1000

// nobodyID is the overflow uid and gid (nobody, nogroup), owner of what
// user namespaces cannot map.
const nobodyID = 65534

// usersGID is Debian's "users" group, the primary group of people's
// accounts where they do not each get their own (adduser's USERGROUPS=no).
const usersGID = 100

// checkIDs refuses ids that would give a user's containers and file
// transfers more than the user's own rights: root's (0) always, system
// accounts' unless the admin says so with --system.
func checkIDs(uid, gid int, system bool) error {
	for _, id := range []struct {
		flag, what string
		n          int
	}{{"--uid", "uid", uid}, {"--gid", "gid", gid}} {
		switch {
		case id.n == 0:
			return fmt.Errorf("%s 0 is root's: the user's containers and file transfers would run with root's rights; give the account's own %s (id NAME)", id.flag, id.what)
		case int64(id.n) > 1<<32-2:
			return fmt.Errorf("%s %d: not a valid %s", id.flag, id.n, id.what)
		case id.what == "gid" && id.n == usersGID:
		case (id.n < firstUserID || id.n == nobodyID) && !system:
			return fmt.Errorf("%s %d belongs to a system account (below %d, or nobody); give the account's own %s (id NAME), or add --system if this user is meant to run as it", id.flag, id.n, firstUserID, id.what)
		}
	}
	return nil
}

// groupRE is a resource group name, as in DS01's resource-limits.yaml.
var groupRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

func userKeyAdd(args []string) error {
	fs := flag.NewFlagSet("user key add", flag.ContinueOnError)
	var c common
	c.register(fs)
	keyFile := fs.String("key-file", "", "public key file (authorized_keys format)")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 || *keyFile == "" {
		return errUsage
	}
	keys, err := readKeys(*keyFile)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, k := range keys {
		if err := st.AddKey(ctx, pos[0], k); err != nil {
			return fmt.Errorf("add key to %s: %w", pos[0], err)
		}
	}
	fmt.Fprintf(os.Stderr, "added %d key(s) to %s\n", len(keys), pos[0])
	return nil
}

func userList(args []string) error {
	fs := flag.NewFlagSet("user list", flag.ContinueOnError)
	var c common
	c.register(fs)
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		return errUsage
	}
	ctx := context.Background()
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUID\tGID\tGROUP\tKEYS")
	for _, u := range users {
		keys, err := st.ListKeys(ctx, u.Name)
		if err != nil {
			return err
		}
		fps := make([]string, len(keys))
		for i, k := range keys {
			fps[i] = k.Fingerprint
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", u.Name, u.UID, u.GID, orDash(u.Group), strings.Join(fps, ","))
	}
	return tw.Flush()
}

func userRemove(args []string) error {
	fs := flag.NewFlagSet("user remove", flag.ContinueOnError)
	var c common
	c.register(fs)
	var po purgeFlags
	po.register(fs)
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	if po.wanted() {
		return userPurge(c, po, pos[0])
	}
	ctx := context.Background()
	st, err := openStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RemoveUser(ctx, pos[0]); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no user %s", pos[0])
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "removed user %s (workspaces are kept)\n", pos[0])
	return nil
}

// readKeys parses an authorized_keys style file, skipping blanks and
// comments; a line that is not a public key is an error, not a skip.
func readKeys(path string) ([]store.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var keys []store.Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pk, comment, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not an SSH public key", path, n)
		}
		keys = append(keys, store.Key{AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))), Comment: comment})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no public key found", path)
	}
	return keys, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
