package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SaveLifecycle records the lifecycle state of a container, replacing what
// was recorded before.
func (s *Store) SaveLifecycle(ctx context.Context, containerID string, state []byte) error {
	if containerID == "" {
		return errors.New("save lifecycle: empty container id")
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO container_lifecycle (container, state, updated_at) VALUES (?1, ?2, ?3)
		 ON CONFLICT (container) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		containerID, string(state), toNanos(time.Now()))
	if err != nil {
		return fmt.Errorf("save lifecycle of %s: %w", containerID, err)
	}
	return nil
}

// Lifecycle returns what SaveLifecycle recorded for the container, or
// ErrNotFound.
func (s *Store) Lifecycle(ctx context.Context, containerID string) ([]byte, error) {
	var state string
	err := s.db.QueryRowContext(ctx,
		`SELECT state FROM container_lifecycle WHERE container = ?`, containerID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("lifecycle of %s: %w", containerID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("lifecycle of %s: %w", containerID, err)
	}
	return []byte(state), nil
}

// DeleteLifecycle forgets the container's lifecycle state; deleting what is
// not there is no error, so a retire that runs twice does not fail.
func (s *Store) DeleteLifecycle(ctx context.Context, containerID string) error {
	if _, err := s.db.ExecContext(ctx,
		`DELETE FROM container_lifecycle WHERE container = ?`, containerID); err != nil {
		return fmt.Errorf("delete lifecycle of %s: %w", containerID, err)
	}
	return nil
}
