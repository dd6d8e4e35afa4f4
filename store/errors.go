package store

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	// ErrNotFound reports that the user, key, project or container asked for
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate reports that a row with the same unique identity (user
	// name, uid, key fingerprint) already exists.
	ErrDuplicate = errors.New("already exists")
)

// mapErr turns driver constraint violations into ErrDuplicate so callers can
// branch with errors.Is without importing the driver. The driver error stays
// in the chain because its message names the violated column.
func mapErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", ErrDuplicate, err)
		}
	}
	return err
}
