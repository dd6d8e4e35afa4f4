package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// UpsertUser records a host account (host accounts mode): it adds u when
// no user has its name, or updates the uid, gid and group of the user of
// that name when they differ. It reports whether anything changed.
// ErrDuplicate when another user holds the uid.
func (s *Store) UpsertUser(ctx context.Context, u User) (changed bool, err error) {
	if u.Name == "" || u.UID < 0 || u.GID < 0 {
		return false, fmt.Errorf("upsert user %q: empty name or negative id", u.Name)
	}
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		old, err := scanUser(tx.QueryRowContext(ctx, `SELECT name, uid, gid, group_name, created_at FROM users WHERE name = ?`, u.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			changed = true
			_, err = tx.ExecContext(ctx, `INSERT INTO users (name, uid, gid, group_name, created_at) VALUES (?, ?, ?, ?, ?)`,
				u.Name, u.UID, u.GID, u.Group, toNanos(orNow(u.CreatedAt)))
			return mapErr(err)
		case err != nil:
			return err
		case old.UID == u.UID && old.GID == u.GID && old.Group == u.Group:
			return nil
		}
		changed = true
		_, err = tx.ExecContext(ctx, `UPDATE users SET uid = ?, gid = ?, group_name = ? WHERE name = ?`, u.UID, u.GID, u.Group, u.Name)
		return mapErr(err)
	})
	if err != nil {
		return false, fmt.Errorf("upsert user %s: %w", u.Name, err)
	}
	return changed, nil
}
