package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

const instanceIDKey = "instance_id"

// InstanceID returns this database's random 16-hex-digit id, creating it on
// first use. It identifies one installation for as long as its database
// lives, so it is kept here rather than derived from the host.
func (s *Store) InstanceID(ctx context.Context) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	// INSERT OR IGNORE then SELECT: whichever process inserts first wins and
	// everyone reads the winner, without a read-then-write race.
	if _, err := s.db.ExecContext(ctx,
		`INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)`,
		instanceIDKey, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	var id string
	if err := s.db.QueryRowContext(ctx,
		`SELECT value FROM meta WHERE key = ?`, instanceIDKey).Scan(&id); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return id, nil
}
