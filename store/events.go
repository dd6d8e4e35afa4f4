package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event is one entry of the audit and usage log.
type Event struct {
	ID        int64     // assigned by AddEvent's insert; ignored on input
	Time      time.Time // now when zero
	Type      string    // e.g. "container.launch"
	User      string
	Project   string
	Container string
	Duration  time.Duration
	Details   string // free text or JSON
}

// AddEvent appends e to the log.
func (s *Store) AddEvent(ctx context.Context, e Event) error {
	if e.Type == "" {
		return errors.New("add event: empty type")
	}
	e.Time = orNow(e.Time)
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO events (time, type, user_name, project, container, duration_ns, details)
		 VALUES (?, ?, ?, ?, ?, ?, ?)`,
		toNanos(e.Time), e.Type, e.User, e.Project, e.Container, int64(e.Duration), e.Details)
	if err != nil {
		return fmt.Errorf("add event %s: %w", e.Type, err)
	}
	if id, err := res.LastInsertId(); err == nil {
		e.ID = id
	}
	s.obsMu.RLock()
	obs := s.observers
	s.obsMu.RUnlock()
	for _, fn := range obs {
		fn(e)
	}
	return nil
}

// OnEvent makes fn hear every event recorded from now on, after it is
// stored, with ID and Time set. fn runs on the recording goroutine, which
// may be a login or the reaper: it must not block (queue, do not write).
// Events recorded by another process sharing the file are not heard.
func (s *Store) OnEvent(fn func(Event)) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.observers = append(slices.Clip(s.observers), fn)
}

// EventFilter selects events; zero fields do not filter.
type EventFilter struct {
	User, Project, Type string
	Since               time.Time // events at or after Since
	Limit               int       // at most Limit events; <= 0 means all
}

// ListEvents returns matching events, newest first.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.User != "" {
		add("user_name = ?", f.User)
	}
	if f.Project != "" {
		add("project = ?", f.Project)
	}
	if f.Type != "" {
		add("type = ?", f.Type)
	}
	if !f.Since.IsZero() {
		add("time >= ?", toNanos(f.Since))
	}
	q := `SELECT id, time, type, user_name, project, container, duration_ns, details FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `) //nolint:gosec // constant clauses with ? placeholders
	}
	// id breaks ties between events logged in the same nanosecond (or with a
	// caller-supplied time) so the order is stable.
	q += ` ORDER BY time DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var es []Event
	for rows.Next() {
		var e Event
		var t, d int64
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.User, &e.Project, &e.Container, &d, &e.Details); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = fromNanos(t)
		e.Duration = time.Duration(d)
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return es, nil
}
