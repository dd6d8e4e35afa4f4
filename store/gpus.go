package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Allocation is one GPU slot held by a container.
type Allocation struct {
	UUID      string
	Container string
	User      string
	UID       int
	Project   string
	GPUEq     float64
	Since     time.Time
}

// PutAllocations records the slots a container holds, replacing any rows
// for those slots in one transaction.
func (s *Store) PutAllocations(ctx context.Context, as []Allocation) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		for _, a := range as {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO gpu_allocations (uuid, container, user_name, uid, project, gpueq, since)
				 VALUES (?, ?, ?, ?, ?, ?, ?)
				 ON CONFLICT (uuid) DO UPDATE SET container = excluded.container, user_name = excluded.user_name,
					uid = excluded.uid, project = excluded.project, gpueq = excluded.gpueq, since = excluded.since`,
				a.UUID, a.Container, a.User, a.UID, a.Project, a.GPUEq, toNanos(orNow(a.Since))); err != nil {
				return fmt.Errorf("put allocation %s: %w", a.UUID, err)
			}
		}
		return nil
	})
}

// DeleteAllocations removes the rows of a container's slots.
func (s *Store) DeleteAllocations(ctx context.Context, container string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM gpu_allocations WHERE container = ?`, container); err != nil {
		return fmt.Errorf("delete allocations of %s: %w", container, err)
	}
	return nil
}

// ListAllocations returns every recorded allocation by UUID.
func (s *Store) ListAllocations(ctx context.Context) ([]Allocation, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT uuid, container, user_name, uid, project, gpueq, since FROM gpu_allocations ORDER BY uuid`)
	if err != nil {
		return nil, fmt.Errorf("list allocations: %w", err)
	}
	defer rows.Close()
	var out []Allocation
	for rows.Next() {
		var a Allocation
		var since int64
		if err := rows.Scan(&a.UUID, &a.Container, &a.User, &a.UID, &a.Project, &a.GPUEq, &since); err != nil {
			return nil, fmt.Errorf("list allocations: %w", err)
		}
		a.Since = fromNanos(since)
		out = append(out, a)
	}
	return out, rows.Err()
}

// ReplaceAllocations makes the table hold exactly as: used on start, when
// the allocations are rebuilt from the containers that still run.
func (s *Store) ReplaceAllocations(ctx context.Context, as []Allocation) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM gpu_allocations`); err != nil {
			return fmt.Errorf("replace allocations: %w", err)
		}
		for _, a := range as {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO gpu_allocations (uuid, container, user_name, uid, project, gpueq, since) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				a.UUID, a.Container, a.User, a.UID, a.Project, a.GPUEq, toNanos(orNow(a.Since))); err != nil {
				return fmt.Errorf("replace allocations: %w", mapErr(err))
			}
		}
		return nil
	})
}

// SetProjectGPUs sets how many GPUs the project's containers get by
// default; -1 restores the gateway's default.
func (s *Store) SetProjectGPUs(ctx context.Context, user, name string, n int) error {
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET gpus = ? WHERE user_name = ? AND name = ?`, n, user, name)
	if err != nil {
		return fmt.Errorf("set gpus of %s/%s: %w", user, name, err)
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return fmt.Errorf("set gpus of %s/%s: %w", user, name, ErrNotFound)
	}
	return nil
}
