package hostusers

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/hostusers/authkeys"
	"github.com/ds01/ds01-gateway/store"
)

var (
	_ gateway.Users     = (*Directory)(nil)
	_ gateway.KeyPolicy = (*Directory)(nil)
)

// UserByKey finds the host account whose authorized_keys holds the key.
// A known key is a map lookup. The account is recorded in the store the
// first time it is seen with these ids (a write only then; this runs
// for a key the client offers, before it signs, which at worst records an
// allowed account early). The user returned is the store's row, whose
// group is the resource group limits use.
func (d *Directory) UserByKey(ctx context.Context, fp string) (store.User, store.Key, error) {
	e, ok := d.lookup(ctx, fp)
	if !ok {
		return store.User{}, store.Key{}, fmt.Errorf("user by key %s: %w", fp, store.ErrNotFound)
	}
	u, err := d.sync(ctx, e.acct)
	if err != nil {
		return store.User{}, store.Key{}, err
	}
	k := store.Key{User: u.Name, Type: e.entry.Key.Type(), Fingerprint: fp, Comment: e.entry.Comment,
		AuthorizedKey: e.line, AddedVia: "authorized_keys"}
	return u, k, nil
}

// sync returns the store's row for m, upserting it unless the store holds
// m's ids already.
func (d *Directory) sync(ctx context.Context, m member) (store.User, error) {
	old, had := d.synced.Load(m.Name)
	if had {
		if ou := old.(store.User); ou.UID == m.UID && ou.GID == m.GID {
			return ou, nil
		}
	}
	u, changed, err := d.st.UpsertUser(ctx, store.User{Name: m.Name, UID: m.UID, GID: m.GID, Group: m.group})
	if err != nil {
		d.log.Error("host accounts: record user", "user", m.Name, "uid", m.UID, "err", err)
		return store.User{}, fmt.Errorf("record host user %s: %w", m.Name, err)
	}
	switch {
	case changed && had:
		ou := old.(store.User)
		d.log.Warn("host accounts: user's ids changed; store updated", "user", u.Name, "uid_was", ou.UID, "gid_was", ou.GID, "uid", u.UID, "gid", u.GID)
	case changed:
		d.log.Info("host accounts: user recorded", "user", u.Name, "uid", u.UID, "gid", u.GID, "group", u.Group)
	}
	d.synced.Store(u.Name, u)
	return u, nil
}

// KeyAccess applies the key's from= and expiry-time= and returns what its
// options forbid.
func (d *Directory) KeyAccess(fp string, remote netip.Addr, now time.Time) (gateway.Restrictions, error) {
	e, ok := d.idx.Load().keys[fp]
	if !ok {
		return gateway.Restrictions{}, fmt.Errorf("key %s: %w", fp, store.ErrNotFound)
	}
	o := e.entry.Options
	if err := o.Check(remote, now); err != nil {
		return gateway.Restrictions{}, err
	}
	return gateway.Restrictions{NoPortForwarding: o.NoPortForwarding, NoAgentForwarding: o.NoAgentForwarding, NoPty: o.NoPty}, nil
}

// InGroup reports whether the named account belongs to group (primary or
// supplementary), asking NSS now: the admin predicate's membership test.
func (d *Directory) InGroup(name, group string) (bool, error) {
	gid, err := d.nss.GroupID(group)
	if err != nil {
		return false, fmt.Errorf("group %s: %w", group, err)
	}
	gids, err := d.nss.GroupIDs(name)
	if err != nil {
		return false, fmt.Errorf("groups of %s: %w", name, err)
	}
	return slices.Contains(gids, gid), nil
}

// Keys reads the account's authorized_keys now (key-list): its usable
// entries, and why others were left out.
func (d *Directory) Keys(name string) ([]authkeys.Entry, []string, error) {
	a, err := d.nss.Lookup(name)
	if err != nil {
		return nil, nil, fmt.Errorf("account %s: %w", name, err)
	}
	data, err := authkeys.Read(a.Home, a.UID)
	if err != nil {
		return nil, nil, err
	}
	es, problems := authkeys.Parse(data, time.Local)
	return es, problems, nil
}

// Size is how many accounts and keys the index holds.
func (d *Directory) Size() (accounts, keys int) {
	idx := d.idx.Load()
	return len(idx.users), len(idx.keys)
}
