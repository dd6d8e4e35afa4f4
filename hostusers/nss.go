package hostusers

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// Account is a host account as NSS describes it.
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// NSS is what the directory asks the host's name service (files, LDAP,
// SSSD); osNSS asks it through os/user (libc's getpwnam_r and friends in
// a cgo build) and getent, tests use a fake.
type NSS interface {
	// Enumerate lists every account NSS will enumerate (getent passwd).
	// SSSD and LDAP without enumeration list only local and cached ones.
	Enumerate(ctx context.Context) ([]Account, error)
	// GroupMembers returns a group's gid and its listed (secondary)
	// members (getent group NAME).
	GroupMembers(ctx context.Context, group string) (gid int, members []string, err error)
	// Lookup finds an account by name.
	Lookup(name string) (Account, error)
	// GroupIDs lists the gids of every group name belongs to, its
	// primary group included.
	GroupIDs(name string) ([]int, error)
	// GroupName is the name of a gid.
	GroupName(gid int) (string, error)
	// GroupID is the gid of a group name.
	GroupID(group string) (int, error)
}

// osNSS is the host's NSS.
type osNSS struct{}

// getentTimeout bounds one getent run: a slow LDAP server must not stall
// the refresh forever.
const getentTimeout = 30 * time.Second

func getent(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, getentTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getent", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("getent %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func (osNSS) Enumerate(ctx context.Context) ([]Account, error) {
	out, err := getent(ctx, "passwd")
	if err != nil {
		return nil, err
	}
	return parsePasswd(out), nil
}

// parsePasswd reads passwd(5) lines, skipping malformed ones.
func parsePasswd(data []byte) []Account {
	var as []Account
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || f[0] == "" {
			continue
		}
		as = append(as, Account{Name: f[0], UID: uid, GID: gid, Home: f[5]})
	}
	return as
}

func (osNSS) GroupMembers(ctx context.Context, group string) (int, []string, error) {
	out, err := getent(ctx, "group", group)
	if err != nil {
		return 0, nil, err
	}
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(f) < 4 {
		return 0, nil, fmt.Errorf("getent group %s: malformed answer", group)
	}
	gid, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, nil, fmt.Errorf("getent group %s: bad gid %q", group, f[2])
	}
	var members []string
	for _, m := range strings.Split(f[3], ",") {
		if m = strings.TrimSpace(m); m != "" {
			members = append(members, m)
		}
	}
	return gid, members, nil
}

func (osNSS) Lookup(name string) (Account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return Account{}, fmt.Errorf("account %s: non-numeric uid or gid", name)
	}
	return Account{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
}

func (osNSS) GroupIDs(name string) ([]int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", name, err)
	}
	out := make([]int, 0, len(ids)+1)
	if gid, err := strconv.Atoi(u.Gid); err == nil {
		out = append(out, gid)
	}
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

func (osNSS) GroupName(gid int) (string, error) {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return "", err
	}
	return g.Name, nil
}

func (osNSS) GroupID(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
