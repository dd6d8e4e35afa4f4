package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrLastKey refuses to remove a user's only key: they could not log in
// again to add another.
var ErrLastKey = errors.New("the last key of an account cannot be removed")

// AddedViaKeyAdd marks a key the user added with key-add.
const AddedViaKeyAdd = "key-add"

// AddOwnKey registers k for user as the user's own addition (key-add):
// AddedVia is set to "key-add", and each of the user's other keys gets a
// notice of it for its next login, in the same transaction. Errors as
// AddKey: ErrNotFound, ErrDuplicate (the key is registered, to anyone).
func (s *Store) AddOwnKey(ctx context.Context, user string, k Key) error {
	k.AddedVia = AddedViaKeyAdd
	return s.addKey(ctx, user, k, func(tx *sql.Tx, nk Key) error {
		_, err := tx.ExecContext(ctx, `UPDATE keys SET notice = ? WHERE user_name = ? AND fingerprint <> ?`, nk.Fingerprint, user, nk.Fingerprint)
		return err
	})
}

// RemoveOwnKey removes the user's key with this fingerprint: ErrNotFound
// when the user has no such key (whoever else may have it), ErrLastKey
// when it is their only one. Notices of the removed key are dropped.
func (s *Store) RemoveOwnKey(ctx context.Context, user, fingerprint string) (Key, error) {
	var removed Key
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		k, err := scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE fingerprint = ? AND user_name = ?`, fingerprint, user))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("key %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys WHERE user_name = ?`, user).Scan(&n); err != nil {
			return err
		}
		if n <= 1 {
			return ErrLastKey
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE fingerprint = ? AND user_name = ?`, fingerprint, user); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET notice = '' WHERE notice = ?`, fingerprint); err != nil {
			return err
		}
		removed = k
		return nil
	})
	if err != nil {
		return Key{}, fmt.Errorf("remove key of %s: %w", user, err)
	}
	return removed, nil
}

// TakeKeyNotice clears the notice of the key with this fingerprint and
// returns the newer key it was about. ok is false when there was none, or
// when another connection took it first (the notice is shown once per
// old key) or the newer key is gone.
func (s *Store) TakeKeyNotice(ctx context.Context, fingerprint string) (newer Key, ok bool, err error) {
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		var fp string
		err := tx.QueryRowContext(ctx, `SELECT notice FROM keys WHERE fingerprint = ?`, fingerprint).Scan(&fp)
		if errors.Is(err, sql.ErrNoRows) || err == nil && fp == "" {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET notice = '' WHERE fingerprint = ?`, fingerprint); err != nil {
			return err
		}
		newer, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE fingerprint = ?`, fp))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return Key{}, false, fmt.Errorf("key notice %s: %w", fingerprint, err)
	}
	return newer, ok, nil
}
