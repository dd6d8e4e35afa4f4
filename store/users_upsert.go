package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// UpsertUser records a host account (host accounts mode) and returns the
// user as stored. A new name is added with u's uid, gid and group. For a
// name the store has, the uid and gid are updated when they differ; the
// group only when none is recorded, so a resource group the admin gave
// (`user add --group`) survives. changed says whether anything was
// written. ErrDuplicate when another user holds the uid.
func (s *Store) UpsertUser(ctx context.Context, u User) (stored User, changed bool, err error) {
	if u.Name == "" || u.UID < 0 || u.GID < 0 {
		return User{}, false, fmt.Errorf("upsert user %q: empty name or negative id", u.Name)
	}
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		old, err := scanUser(tx.QueryRowContext(ctx, `SELECT name, uid, gid, group_name, created_at FROM users WHERE name = ?`, u.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			u.CreatedAt = orNow(u.CreatedAt)
			stored, changed = u, true
			_, err = tx.ExecContext(ctx, `INSERT INTO users (name, uid, gid, group_name, created_at) VALUES (?, ?, ?, ?, ?)`,
				u.Name, u.UID, u.GID, u.Group, toNanos(u.CreatedAt))
			return mapErr(err)
		case err != nil:
			return err
		}
		stored = old
		if old.Group == "" {
			stored.Group = u.Group
		}
		stored.UID, stored.GID = u.UID, u.GID
		if stored == old {
			return nil
		}
		changed = true
		_, err = tx.ExecContext(ctx, `UPDATE users SET uid = ?, gid = ?, group_name = ? WHERE name = ?`, stored.UID, stored.GID, stored.Group, u.Name)
		return mapErr(err)
	})
	if err != nil {
		return User{}, false, fmt.Errorf("upsert user %s: %w", u.Name, err)
	}
	return stored, changed, nil
}
