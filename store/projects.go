package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Project is a user's named workspace; (User, Name) is unique.
type Project struct {
	User      string
	Name      string
	Workspace string // host path of the workspace directory
	// WorkspaceAnchor is the root-owned directory above the user's part
	// of Workspace ("" for projects recorded before it was kept).
	WorkspaceAnchor string
	CreatedAt       time.Time // set to now when zero
	LastUsed        time.Time // set to CreatedAt when zero
	// GPUs is how many GPUs a login gets unless it says otherwise; -1
	// means the gateway's default. Set with SetProjectGPUs.
	GPUs int
}

// CreateProject inserts p unless (p.User, p.Name) exists. created reports
// whether it did; an existing project is left unchanged, so concurrent first
// sessions of one project agree on a single row.
func (s *Store) CreateProject(ctx context.Context, p Project) (created bool, err error) {
	if p.User == "" || p.Name == "" {
		return false, errors.New("create project: empty user or name")
	}
	p.CreatedAt = orNow(p.CreatedAt)
	if p.LastUsed.IsZero() {
		p.LastUsed = p.CreatedAt
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO projects (user_name, name, workspace, workspace_anchor, created_at, last_used)
		 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_name, name) DO NOTHING`,
		p.User, p.Name, p.Workspace, p.WorkspaceAnchor, toNanos(p.CreatedAt), toNanos(p.LastUsed))
	if err != nil {
		return false, fmt.Errorf("create project %s/%s: %w", p.User, p.Name, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("create project %s/%s: %w", p.User, p.Name, err)
	}
	return n == 1, nil
}

// GetProject returns the project, or ErrNotFound.
func (s *Store) GetProject(ctx context.Context, user, name string) (Project, error) {
	row := s.db.QueryRowContext(ctx,
		`SELECT user_name, name, workspace, workspace_anchor, created_at, last_used, gpus
		 FROM projects WHERE user_name = ? AND name = ?`, user, name)
	p, err := scanProject(row)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Project{}, fmt.Errorf("get project %s/%s: %w", user, name, err)
	}
	return p, nil
}

// ListProjects returns the user's projects ordered by name. It does not
// check that the user exists: projects outlive removed users.
func (s *Store) ListProjects(ctx context.Context, user string) ([]Project, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT user_name, name, workspace, workspace_anchor, created_at, last_used, gpus
		 FROM projects WHERE user_name = ? ORDER BY name`, user)
	if err != nil {
		return nil, fmt.Errorf("list projects of %s: %w", user, err)
	}
	defer rows.Close()
	var ps []Project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, fmt.Errorf("list projects of %s: %w", user, err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list projects of %s: %w", user, err)
	}
	return ps, nil
}

// TouchProject records t as the project's last use, or returns ErrNotFound.
func (s *Store) TouchProject(ctx context.Context, user, name string, t time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE projects SET last_used = ? WHERE user_name = ? AND name = ?`,
		toNanos(orNow(t)), user, name)
	if err != nil {
		return fmt.Errorf("touch project %s/%s: %w", user, name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("touch project %s/%s: %w", user, name, err)
	}
	if n == 0 {
		return fmt.Errorf("touch project %s/%s: %w", user, name, ErrNotFound)
	}
	return nil
}

// SetWorkspaceAnchor records the anchor of a project recorded without one.
func (s *Store) SetWorkspaceAnchor(ctx context.Context, user, name, anchor string) error {
	_, err := s.db.ExecContext(ctx,
		`UPDATE projects SET workspace_anchor = ? WHERE user_name = ? AND name = ? AND workspace_anchor = ''`,
		anchor, user, name)
	if err != nil {
		return fmt.Errorf("set workspace anchor %s/%s: %w", user, name, err)
	}
	return nil
}

func scanProject(r scanner) (Project, error) {
	var p Project
	var created, used int64
	if err := r.Scan(&p.User, &p.Name, &p.Workspace, &p.WorkspaceAnchor, &created, &used, &p.GPUs); err != nil {
		return Project{}, err
	}
	p.CreatedAt = fromNanos(created)
	p.LastUsed = fromNanos(used)
	return p, nil
}
