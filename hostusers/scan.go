package hostusers

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/hostusers/authkeys"
)

// scan builds a new index. The candidates are:
//   - with allowed_groups: each group's members as NSS lists them (getent
//     group) and the enumerated accounts whose primary group it is;
//   - without: every account NSS enumerates (getent passwd);
//   - in both cases, the accounts the store already knows (users who
//     logged in before), looked up by name.
//
// Limits: an NSS source that does not enumerate (SSSD's default
// enumerate = false, LDAP with enumeration off) lists no remote accounts
// in getent passwd. With allowed_groups set, group members still come
// through getent group (unless SSSD's ignore_group_members is on), except
// members by primary group alone; without allowed_groups, such accounts
// are found only once they are in the store (a `user add`, or a login in
// an earlier run). Set allowed_groups on such hosts.
func (d *Directory) scan(ctx context.Context) *index {
	cands := map[string]Account{}
	var enumerated []Account
	if as, err := d.nss.Enumerate(ctx); err != nil {
		d.log.Warn("host accounts: cannot enumerate accounts", "err", err)
	} else {
		enumerated = as
	}
	if len(d.cfg.AllowedGroups) == 0 {
		for _, a := range enumerated {
			cands[a.Name] = a
		}
	}
	allowedGIDs := map[int]bool{}
	for _, g := range d.cfg.AllowedGroups {
		gid, members, err := d.nss.GroupMembers(ctx, g)
		if err != nil {
			d.log.Warn("host accounts: allowed group not found", "group", g, "err", err)
			continue
		}
		allowedGIDs[gid] = true
		for _, a := range enumerated {
			if a.GID == gid {
				cands[a.Name] = a
			}
		}
		for _, m := range members {
			d.addByName(cands, m)
		}
	}
	if us, err := d.st.ListUsers(ctx); err != nil {
		d.log.Warn("host accounts: list known users", "err", err)
	} else {
		for _, u := range us {
			d.synced.Store(u.Name, u)
			d.addByName(cands, u.Name)
		}
	}

	prev := d.idx.Load()
	idx := &index{keys: map[string]indexed{}, users: map[string]member{}}
	problems := map[string]string{}
	groupNames := map[int]string{}
	dupes := map[string][]string{}
	read := map[string][]authkeys.Entry{}
	names := make([]string, 0, len(cands))
	for n := range cands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		a := cands[name]
		if why := d.refuse(a, allowedGIDs); why != "" {
			continue // not a candidate at all: no log per system account
		}
		gname, ok := groupNames[a.GID]
		if !ok {
			gname, _ = d.nss.GroupName(a.GID)
			groupNames[a.GID] = gname
		}
		m := member{Account: a, group: gname}
		idx.users[name] = m
		entries, why := d.readKeys(a)
		read[name] = entries
		if why != "" {
			problems[name] = why
		}
		for _, e := range entries {
			if other, taken := idx.keys[e.Fingerprint]; taken {
				dupes[e.Fingerprint] = append(dupes[e.Fingerprint], other.acct.Name, name)
				continue
			}
			idx.keys[e.Fingerprint] = indexed{acct: m, entry: e, line: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(e.Key)))}
		}
	}
	// A key in two accounts' files cannot tell who logs in. The account
	// that had it in the last index keeps it (so copying someone's public
	// key into one's own file takes nothing from them); a key new to both
	// is refused for both.
	for fp, owners := range dupes {
		owners = slices.Compact(slices.Sorted(slices.Values(owners)))
		keep := ""
		if old, ok := prev.keys[fp]; ok && slices.Contains(owners, old.acct.Name) {
			keep = old.acct.Name
		}
		if keep == "" {
			delete(idx.keys, fp)
		} else if cur := idx.keys[fp]; cur.acct.Name != keep {
			for _, e := range read[keep] {
				if e.Fingerprint == fp {
					idx.keys[fp] = indexed{acct: idx.users[keep], entry: e, line: cur.line}
				}
			}
		}
		d.log.Warn("host accounts: one key in several accounts' authorized_keys", "key", fp, "accounts", strings.Join(owners, ","), "kept_for", keep)
	}
	d.report(problems)
	return idx
}

// addByName adds the named account to cands when NSS knows it.
func (d *Directory) addByName(cands map[string]Account, name string) {
	if _, ok := cands[name]; ok {
		return
	}
	a, err := d.nss.Lookup(name)
	if err != nil {
		return // a store user without a host account, or a stale member
	}
	cands[name] = a
}

// refuse says why an account may never log in, or "".
func (d *Directory) refuse(a Account, allowedGIDs map[int]bool) string {
	switch {
	case a.UID == 0:
		return "uid 0"
	case a.UID < d.cfg.MinUID:
		return "system account (uid below min_uid)"
	case a.UID == nobodyUID || a.UID < 0:
		return "overflow uid"
	case !strings.HasPrefix(a.Home, "/"):
		return "no home directory"
	}
	if len(d.cfg.AllowedGroups) == 0 {
		return ""
	}
	if allowedGIDs[a.GID] {
		return ""
	}
	gids, err := d.nss.GroupIDs(a.Name)
	if err != nil {
		return "groups unknown: " + err.Error()
	}
	for _, g := range gids {
		if allowedGIDs[g] {
			return ""
		}
	}
	return "not in allowed_groups"
}

// readKeys reads an account's usable keys; why says what was refused.
func (d *Directory) readKeys(a Account) ([]authkeys.Entry, string) {
	data, err := authkeys.Read(a.Home, a.UID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "" // no ~/.ssh or no authorized_keys: nothing to say
	}
	if err != nil {
		return nil, "keys refused: " + err.Error()
	}
	entries, problems := authkeys.Parse(data, time.Local)
	if len(problems) > 0 {
		return entries, "authorized_keys: " + strings.Join(problems, "; ")
	}
	return entries, ""
}

// report logs each account's problem once, when it appears or changes,
// so the admin sees why a user's keys do not work without a line per
// refresh.
func (d *Directory) report(problems map[string]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, why := range problems {
		if d.problems[name] != why {
			d.log.Warn("host accounts: "+why, "user", name)
		}
	}
	for name := range d.problems {
		if _, still := problems[name]; !still {
			d.log.Info("host accounts: keys readable again", "user", name)
		}
	}
	d.problems = problems
}
