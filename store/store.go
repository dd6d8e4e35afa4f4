// Package store is the gateway's embedded SQLite database: users and their
// SSH keys, projects, containers and an event log.
//
// The database file is shared by the running server and by admin CLI
// commands, so every connection uses WAL (readers never block the writer),
// a busy timeout (writers from the other process wait instead of failing)
// and IMMEDIATE write transactions (a transaction takes the write lock up
// front, so it cannot fail half way when upgrading from a read lock).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Store is a handle on the database file. It is safe for concurrent use, and
// several Stores (in one or more processes) may share one file.
type Store struct {
	db *sql.DB

	// observers hear every event AddEvent records (the events file, the
	// metrics); set by OnEvent before the server starts.
	obsMu     sync.RWMutex
	observers []func(Event)
}

// Open opens (creating if needed) the database at path and applies pending
// migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	// The driver cuts the DSN at the first '?', so such a path would silently
	// open a different file.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("open store %s: path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil { //nolint:gosec // the admin's data_dir
		return nil, fmt.Errorf("open store: create dir: %w", err)
	}
	// Create the file ourselves: SQLite would use 0644 (minus umask), and it
	// gives the -wal and -shm files the mode of the main file, so creating
	// it 0600 keeps all three private. An existing file keeps its mode, in
	// case an admin opened it up to a group on purpose.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the admin's data_dir
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	db, err := sql.Open("sqlite", path+"?"+dsnParams().Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := retryBusy(ctx, func() error {
		if err := db.PingContext(ctx); err != nil {
			return err
		}
		return migrate(ctx, db)
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// retryBusy retries fn while SQLite reports the file busy. Switching a new
// file to WAL mode can fail with SQLITE_BUSY without waiting on the busy
// timeout when another process opens the same file at the same moment.
func retryBusy(ctx context.Context, fn func() error) error {
	delay := 5 * time.Millisecond
	for i := 0; ; i++ {
		err := fn()
		if err == nil || i >= 40 || !isBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// dsnParams are applied by the driver to every pooled connection, which is
// why they live in the DSN rather than in a one-off PRAGMA after Open.
func dsnParams() url.Values {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// NORMAL is durable across application crashes in WAL mode; only a
	// power loss can drop the last commits, which is acceptable here.
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return q
}

// Close releases the database. The file stays usable by other Stores.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// withTx runs fn in one write transaction, committing if fn returns nil.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return withTx(ctx, s.db, fn)
}

func withTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapErr(err))
	}
	return nil
}
