package session

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ds01/ds01-gateway/session/lifecycle"
)

// exemptionsFile is DS01's lifecycle-exemptions.yaml, read again whenever
// it changes, so an admin's new exemption needs no restart. A file that
// no longer parses keeps the last good one (and says so in the log).
type exemptionsFile struct {
	path string

	mu  sync.Mutex
	mod time.Time
	ex  *lifecycle.Exemptions
}

func (f *exemptionsFile) load(log *slog.Logger) *lifecycle.Exemptions {
	if f.path == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.readLocked(log, false); err != nil {
		log.Error("lifecycle: exemptions file; keeping the last good one", "err", err)
	}
	return f.ex
}

// reload reads the file now, changed or not; a file that does not parse
// keeps the last good exemptions and is the error.
func (f *exemptionsFile) reload(log *slog.Logger) error {
	if f.path == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readLocked(log, true)
}

// readLocked reads the file if it changed (or if force); a missing file
// means no exemptions, one that does not parse keeps the last good ones.
func (f *exemptionsFile) readLocked(log *slog.Logger, force bool) error {
	st, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		f.ex, f.mod = nil, time.Time{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("exemptions file: %w", err)
	}
	if !force && st.ModTime().Equal(f.mod) {
		return nil
	}
	ex, err := lifecycle.LoadExemptions(f.path)
	if err != nil {
		return err
	}
	f.ex, f.mod = ex, st.ModTime()
	log.Info("lifecycle: exemptions loaded", "file", f.path)
	return nil
}

// atomicTime is a time read and written without a lock.
type atomicTime struct{ ns atomic.Int64 }

func (a *atomicTime) Store(t time.Time) { a.ns.Store(t.UnixNano()) }

func (a *atomicTime) Load() time.Time {
	if n := a.ns.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
