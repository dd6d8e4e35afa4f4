package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// User is a gateway account, mapped onto a Linux uid/gid for containers.
type User struct {
	Name      string
	UID, GID  int
	Group     string
	CreatedAt time.Time // set to now by AddUser when zero
}

// AddUser creates u with its initial keys atomically, so a user never exists
// half registered. It returns ErrDuplicate when the name or the uid is taken
// or when one of the keys is already registered (to anyone). Each key's User
// field is ignored and set to u.Name.
func (s *Store) AddUser(ctx context.Context, u User, keys []Key) error {
	if u.Name == "" {
		return errors.New("add user: empty name")
	}
	if u.UID < 0 || u.GID < 0 {
		return fmt.Errorf("add user %s: negative uid or gid", u.Name)
	}
	u.CreatedAt = orNow(u.CreatedAt)
	norm := make([]Key, 0, len(keys))
	for _, k := range keys {
		k.User = u.Name
		nk, err := normalizeKey(k)
		if err != nil {
			return fmt.Errorf("add user %s: %w", u.Name, err)
		}
		norm = append(norm, nk)
	}

	err := s.withTx(ctx, func(tx *sql.Tx) error {
		// Explicit checks give the admin a message naming the conflict; the
		// constraints remain the real guard (see mapErr).
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = ?`, u.Name).Scan(new(int)); err == nil {
			return fmt.Errorf("user name is taken: %w", ErrDuplicate)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var owner string
		if err := tx.QueryRowContext(ctx, `SELECT name FROM users WHERE uid = ?`, u.UID).Scan(&owner); err == nil {
			return fmt.Errorf("uid %d is used by user %s: %w", u.UID, owner, ErrDuplicate)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO users (name, uid, gid, group_name, created_at) VALUES (?, ?, ?, ?, ?)`,
			u.Name, u.UID, u.GID, u.Group, toNanos(u.CreatedAt)); err != nil {
			return mapErr(err)
		}
		for _, k := range norm {
			if err := insertKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add user %s: %w", u.Name, err)
	}
	return nil
}

// RemoveUser deletes the user and its keys. Projects, containers and events
// are kept as history.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		// Keys go explicitly rather than only by ON DELETE CASCADE, so a
		// connection without foreign_keys could never leave a key that still
		// authenticates.
		if _, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE user_name = ?`, name); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove user %s: %w", name, err)
	}
	return nil
}

// GetUser returns the named user, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, name string) (User, error) {
	row := s.db.QueryRowContext(ctx,
		`SELECT name, uid, gid, group_name, created_at FROM users WHERE name = ?`, name)
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", name, err)
	}
	return u, nil
}

// ListUsers returns all users ordered by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT name, uid, gid, group_name, created_at FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

func scanUser(r scanner) (User, error) {
	var u User
	var created int64
	if err := r.Scan(&u.Name, &u.UID, &u.GID, &u.Group, &created); err != nil {
		return User{}, err
	}
	u.CreatedAt = fromNanos(created)
	return u, nil
}

// userExists reports whether name is a user; q is the db or a transaction.
func userExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, name string) (bool, error) {
	err := q.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = ?`, name).Scan(new(int))
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}
