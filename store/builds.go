package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Build results.
const (
	BuildRunning = "running"
	BuildOK      = "ok"
	BuildFailed  = "failed"
)

// Build is one image build of a project.
type Build struct {
	ID         int64
	User       string
	Project    string
	StartedAt  time.Time // now when zero
	Duration   time.Duration
	Result     string // BuildRunning, BuildOK or BuildFailed
	ImageID    string
	Reason     string // what asked for it: "first login", "image-update --add jq", ...
	FailedStep string // the builder's step that failed, e.g. "Step 3/7 : RUN ..."
	Error      string
	Dockerfile string
}

// KeepBuilds is how many builds of a project the store keeps: each row
// holds a whole Dockerfile, and a user can fail builds in a loop.
const KeepBuilds = 20

// StartBuild records a running build and returns its ID. The project's
// oldest builds beyond KeepBuilds go.
func (s *Store) StartBuild(ctx context.Context, b Build) (int64, error) {
	if b.User == "" || b.Project == "" {
		return 0, errors.New("start build: empty user or project")
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO builds (user_name, project, started_at, result, reason, dockerfile)
		 VALUES (?, ?, ?, ?, ?, ?)`,
		b.User, b.Project, toNanos(orNow(b.StartedAt)), BuildRunning, b.Reason, b.Dockerfile)
	if err != nil {
		return 0, fmt.Errorf("start build %s/%s: %w", b.User, b.Project, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("start build %s/%s: %w", b.User, b.Project, err)
	}
	_, err = s.db.ExecContext(ctx,
		`DELETE FROM builds WHERE user_name = ? AND project = ? AND id <= (
		   SELECT id FROM builds WHERE user_name = ? AND project = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		b.User, b.Project, b.User, b.Project, KeepBuilds)
	if err != nil {
		return id, fmt.Errorf("prune builds of %s/%s: %w", b.User, b.Project, err)
	}
	return id, nil
}

// FinishBuild records how build id ended; result is BuildOK or BuildFailed.
func (s *Store) FinishBuild(ctx context.Context, id int64, result, imageID, failedStep, errMsg string, d time.Duration) error {
	if result != BuildOK && result != BuildFailed {
		return fmt.Errorf("finish build %d: invalid result %q", id, result)
	}
	res, err := s.db.ExecContext(ctx,
		`UPDATE builds SET result = ?, image_id = ?, failed_step = ?, error = ?, duration_ns = ?
		 WHERE id = ?`, result, imageID, failedStep, errMsg, int64(d), id)
	if err != nil {
		return fmt.Errorf("finish build %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("finish build %d: %w", id, ErrNotFound)
	}
	return nil
}

// ListBuilds returns the project's last limit builds (all when limit <= 0),
// newest first.
func (s *Store) ListBuilds(ctx context.Context, user, project string, limit int) ([]Build, error) {
	q := `SELECT id, user_name, project, started_at, duration_ns, result, image_id, reason, failed_step, error, dockerfile
		  FROM builds WHERE user_name = ? AND project = ? ORDER BY id DESC`
	args := []any{user, project}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list builds of %s/%s: %w", user, project, err)
	}
	defer rows.Close()
	var out []Build
	for rows.Next() {
		var b Build
		var started, dur int64
		if err := rows.Scan(&b.ID, &b.User, &b.Project, &started, &dur, &b.Result, &b.ImageID, &b.Reason, &b.FailedStep, &b.Error, &b.Dockerfile); err != nil {
			return nil, fmt.Errorf("list builds of %s/%s: %w", user, project, err)
		}
		b.StartedAt, b.Duration = fromNanos(started), time.Duration(dur)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list builds of %s/%s: %w", user, project, err)
	}
	return out, nil
}

// FailRunningBuilds closes builds left running by a gateway that died
// mid-build, and returns how many it closed.
func (s *Store) FailRunningBuilds(ctx context.Context, why string) (int, error) {
	res, err := s.db.ExecContext(ctx,
		`UPDATE builds SET result = ?, error = ? WHERE result = ?`, BuildFailed, why, BuildRunning)
	if err != nil {
		return 0, fmt.Errorf("fail running builds: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
