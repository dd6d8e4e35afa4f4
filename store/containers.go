package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Container states.
const (
	StateRunning = "running"
	StateRetired = "retired"
)

// Container is a Docker container the gateway launched for a project.
type Container struct {
	ID        string // Docker container ID
	Name      string
	User      string
	Project   string
	Image     string
	State     string    // StateRunning or StateRetired; empty means running
	CreatedAt time.Time // set to now when zero on first insert
	RetiredAt time.Time // zero unless retired
}

// PutContainer inserts c or replaces the row with the same ID. A zero
// CreatedAt on an existing row keeps the stored one, so a caller updating
// state need not carry the creation time around.
func (s *Store) PutContainer(ctx context.Context, c Container) error {
	if c.ID == "" {
		return errors.New("put container: empty id")
	}
	if c.State == "" {
		c.State = StateRunning
	}
	if c.State != StateRunning && c.State != StateRetired {
		return fmt.Errorf("put container %s: invalid state %q", c.ID, c.State)
	}
	keepCreated := c.CreatedAt.IsZero()
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO containers (id, name, user_name, project, image, state, created_at, retired_at)
		 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
		 ON CONFLICT (id) DO UPDATE SET
			name = excluded.name,
			user_name = excluded.user_name,
			project = excluded.project,
			image = excluded.image,
			state = excluded.state,
			created_at = CASE WHEN ?9 THEN containers.created_at ELSE excluded.created_at END,
			retired_at = excluded.retired_at`,
		c.ID, c.Name, c.User, c.Project, c.Image, c.State,
		toNanos(orNow(c.CreatedAt)), toNanos(c.RetiredAt), keepCreated)
	if err != nil {
		return fmt.Errorf("put container %s: %w", c.ID, mapErr(err))
	}
	return nil
}

// RetireContainer marks the container retired at t (now when zero), or
// returns ErrNotFound. Retiring twice keeps the first time, so a reconcile
// pass repeating the call does not rewrite history.
func (s *Store) RetireContainer(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE containers SET
			retired_at = CASE WHEN state = ?1 THEN retired_at ELSE ?2 END,
			state = ?1
		 WHERE id = ?3`,
		StateRetired, toNanos(orNow(at)), id)
	if err != nil {
		return fmt.Errorf("retire container %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("retire container %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("retire container %s: %w", id, ErrNotFound)
	}
	return nil
}

// ListContainers returns containers oldest first; activeOnly keeps only
// running ones.
func (s *Store) ListContainers(ctx context.Context, activeOnly bool) ([]Container, error) {
	q := `SELECT id, name, user_name, project, image, state, created_at, retired_at FROM containers`
	var args []any
	if activeOnly {
		q += ` WHERE state = ?`
		args = append(args, StateRunning)
	}
	q += ` ORDER BY created_at, id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	defer rows.Close()
	var cs []Container
	for rows.Next() {
		var c Container
		var created, retired int64
		if err := rows.Scan(&c.ID, &c.Name, &c.User, &c.Project, &c.Image, &c.State, &created, &retired); err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		c.CreatedAt = fromNanos(created)
		c.RetiredAt = fromNanos(retired)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return cs, nil
}
