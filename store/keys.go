package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Key is an SSH public key that authenticates a user.
type Key struct {
	User string
	// Type is the key algorithm, e.g. "ssh-ed25519". Filled from
	// AuthorizedKey when empty.
	Type string
	// Fingerprint is ssh.FingerprintSHA256 of the key. Filled from
	// AuthorizedKey when empty.
	Fingerprint string
	// AuthorizedKey is one authorized_keys line without comment. A trailing
	// comment given here is moved to Comment.
	AuthorizedKey string
	Comment       string
	CreatedAt     time.Time // set to now when zero
	// AddedVia is how the key was registered: "admin" (the default) or
	// "key-add" (the user, over ssh); AddedFrom the client's address then.
	AddedVia  string
	AddedFrom string
	// Notice is the fingerprint of a key the user added since this one
	// last logged in ("" when none); see TakeKeyNotice.
	Notice string
}

// normalizeKey parses AuthorizedKey and checks that Type and Fingerprint
// describe that key. Auth looks keys up by fingerprint, so a row whose
// fingerprint belonged to another key would let that other key in.
func normalizeKey(k Key) (Key, error) {
	pk, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedKey))
	if err != nil {
		return Key{}, fmt.Errorf("parse key %q: %w", k.AuthorizedKey, err)
	}
	fp := ssh.FingerprintSHA256(pk)
	if k.Fingerprint != "" && k.Fingerprint != fp {
		return Key{}, fmt.Errorf("key fingerprint %s does not match its key (%s)", k.Fingerprint, fp)
	}
	if k.Type != "" && k.Type != pk.Type() {
		return Key{}, fmt.Errorf("key type %s does not match its key (%s)", k.Type, pk.Type())
	}
	k.Fingerprint = fp
	k.Type = pk.Type()
	k.AuthorizedKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if k.Comment == "" {
		k.Comment = comment
	}
	k.CreatedAt = orNow(k.CreatedAt)
	if k.AddedVia == "" {
		k.AddedVia = "admin"
	}
	return k, nil
}

func insertKey(ctx context.Context, tx *sql.Tx, k Key) error {
	var owner string
	err := tx.QueryRowContext(ctx, `SELECT user_name FROM keys WHERE fingerprint = ?`, k.Fingerprint).Scan(&owner)
	if err == nil {
		return fmt.Errorf("key %s is already registered to user %s: %w", k.Fingerprint, owner, ErrDuplicate)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO keys (fingerprint, user_name, type, authorized_key, comment, created_at, added_via, added_from)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.Fingerprint, k.User, k.Type, k.AuthorizedKey, k.Comment, toNanos(k.CreatedAt), k.AddedVia, k.AddedFrom)
	return mapErr(err)
}

// AddKey registers k for user. It returns ErrNotFound if the user does not
// exist and ErrDuplicate if the key is already registered (to anyone).
func (s *Store) AddKey(ctx context.Context, user string, k Key) error {
	return s.addKey(ctx, user, k, nil)
}

// addKey inserts k for user and runs then, if any, in the same
// transaction.
func (s *Store) addKey(ctx context.Context, user string, k Key, then func(tx *sql.Tx, nk Key) error) error {
	k.User = user
	nk, err := normalizeKey(k)
	if err != nil {
		return fmt.Errorf("add key for %s: %w", user, err)
	}
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		ok, err := userExists(ctx, tx, user)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %w", ErrNotFound)
		}
		if err := insertKey(ctx, tx, nk); err != nil {
			return err
		}
		if then != nil {
			return then(tx, nk)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add key for %s: %w", user, err)
	}
	return nil
}

// ListKeys returns the user's keys, oldest first, or ErrNotFound if the user
// does not exist (an empty list would hide a typo in the name).
func (s *Store) ListKeys(ctx context.Context, user string) ([]Key, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM keys WHERE user_name = ? ORDER BY created_at, fingerprint`, user)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", user, err)
	}
	defer rows.Close()
	var ks []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list keys of %s: %w", user, err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", user, err)
	}
	if len(ks) == 0 {
		ok, err := userExists(ctx, s.db, user)
		if err != nil {
			return nil, fmt.Errorf("list keys of %s: %w", user, err)
		}
		if !ok {
			return nil, fmt.Errorf("list keys of %s: user %w", user, ErrNotFound)
		}
	}
	return ks, nil
}

// UserByKey finds the user owning the key with this SHA256 fingerprint. It
// is the authentication lookup; callers should still compare the returned
// Key.AuthorizedKey with the key the client proved it holds. Of the key's
// record-keeping columns it reads only Notice (AddedVia and AddedFrom stay
// empty): each column costs every login.
func (s *Store) UserByKey(ctx context.Context, fingerprint string) (User, Key, error) {
	row := s.db.QueryRowContext(ctx,
		`SELECT u.name, u.uid, u.gid, u.group_name, u.created_at,
		        k.user_name, k.type, k.fingerprint, k.authorized_key, k.comment, k.created_at, k.notice
		 FROM keys k JOIN users u ON u.name = k.user_name
		 WHERE k.fingerprint = ?`, fingerprint)
	var u User
	var k Key
	var uCreated, kCreated int64
	err := row.Scan(&u.Name, &u.UID, &u.GID, &u.Group, &uCreated,
		&k.User, &k.Type, &k.Fingerprint, &k.AuthorizedKey, &k.Comment, &kCreated, &k.Notice)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return User{}, Key{}, fmt.Errorf("user by key %s: %w", fingerprint, err)
	}
	u.CreatedAt = fromNanos(uCreated)
	k.CreatedAt = fromNanos(kCreated)
	return u, k, nil
}

// keyColumns are the columns scanKey reads, in its order.
const keyColumns = `user_name, type, fingerprint, authorized_key, comment, created_at, added_via, added_from, notice`

func scanKey(r scanner) (Key, error) {
	var k Key
	var created int64
	if err := r.Scan(&k.User, &k.Type, &k.Fingerprint, &k.AuthorizedKey, &k.Comment, &created, &k.AddedVia, &k.AddedFrom, &k.Notice); err != nil {
		return Key{}, err
	}
	k.CreatedAt = fromNanos(created)
	return k, nil
}
