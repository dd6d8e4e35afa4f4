package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Notice is one lifecycle message for a user: a warning or a stop.
type Notice struct {
	ID        int64     // assigned by AddNotice; ignored on input
	Time      time.Time // now when zero
	User      string
	Project   string
	Container string
	Text      string // the line as sessions print it
}

const (
	// maxUnseen is how many notices a login shows: a user away for weeks
	// needs the latest, not a screenful per container.
	maxUnseen = 50
	// NoticeRetention is how long notices are kept: older ones are pruned,
	// seen or not.
	NoticeRetention = 30 * 24 * time.Hour
	// pruneEvery is how many AddNotice calls pass between prunes: often
	// enough that the table stays small, rarely enough to cost nothing.
	pruneEvery = 64
)

// AddNotice stores n and returns its id. seen records whether a live
// session already printed it; unseen ones are for UnseenNotices. Every
// pruneEvery notices, it also deletes the ones older than NoticeRetention.
func (s *Store) AddNotice(ctx context.Context, n Notice, seen bool) (int64, error) {
	if n.User == "" || n.Text == "" {
		return 0, errors.New("add notice: empty user or text")
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO notices (time, user_name, project, container, text, seen) VALUES (?, ?, ?, ?, ?, ?)`,
		toNanos(orNow(n.Time)), n.User, n.Project, n.Container, n.Text, seen)
	if err != nil {
		return 0, fmt.Errorf("add notice for %s: %w", n.User, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("add notice for %s: %w", n.User, err)
	}
	if id%pruneEvery == 0 {
		if err := s.PruneNotices(ctx, time.Now().Add(-NoticeRetention)); err != nil {
			return id, err
		}
	}
	return id, nil
}

// UnseenNotices returns the user's unseen notices, oldest first: the
// newest maxUnseen (50) of them, so that a login after a long absence
// shows what is current; older unseen ones stay until marked or pruned.
func (s *Store) UnseenNotices(ctx context.Context, user string) ([]Notice, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, time, user_name, project, container, text FROM (
			SELECT * FROM notices WHERE user_name = ? AND seen = 0 ORDER BY time DESC, id DESC LIMIT ?
		 ) ORDER BY time, id`, user, maxUnseen)
	if err != nil {
		return nil, fmt.Errorf("unseen notices of %s: %w", user, err)
	}
	defer rows.Close()
	var ns []Notice
	for rows.Next() {
		var n Notice
		var t int64
		if err := rows.Scan(&n.ID, &t, &n.User, &n.Project, &n.Container, &n.Text); err != nil {
			return nil, fmt.Errorf("unseen notices of %s: %w", user, err)
		}
		n.Time = fromNanos(t)
		ns = append(ns, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unseen notices of %s: %w", user, err)
	}
	return ns, nil
}

// MarkNoticesSeen marks the notices seen; unknown ids are ignored.
func (s *Store) MarkNoticesSeen(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `UPDATE notices SET seen = 1 WHERE id IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)` //nolint:gosec // placeholders only
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("mark notices seen: %w", err)
	}
	return nil
}

// PruneNotices deletes the notices from before before, seen or not.
func (s *Store) PruneNotices(ctx context.Context, before time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM notices WHERE time < ?`, toNanos(before)); err != nil {
		return fmt.Errorf("prune notices: %w", err)
	}
	return nil
}
