package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/observe/eventlog"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// validateService checks the keys of running as a service.
func (c *Config) validateService() error {
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: want text or json, got %q", c.LogFormat)
	}
	if c.ShutdownTimeout.Duration < 0 {
		return errors.New("shutdown_timeout: must not be negative (0 closes sessions at once)")
	}
	if c.EventsFile != "" && (strings.HasSuffix(c.EventsFile, "/") || strings.ContainsRune(c.EventsFile, 0)) {
		return fmt.Errorf("events_file: want a file path like /var/log/ds01/events.jsonl, got %q", c.EventsFile)
	}
	return nil
}

// newLogger is the gateway's log on w, stderr (journald adds its fields): text
// or JSON lines (for journald's and Loki's field parsing), at a level a
// reload may change through the returned LevelVar.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar) {
	lv := &slog.LevelVar{}
	lv.Set(parseLevel(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

func parseLevel(level string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return slog.LevelInfo // Validate refused it already
	}
	return l
}

// signals turns the process's signals into the gateway's life: the first
// SIGTERM or SIGINT ends the context (serve then shuts down gracefully), a
// second one exits at once, and SIGHUP asks for a reload.
type signals struct {
	ch     chan os.Signal
	hup    chan struct{} // one pending reload; more coalesce
	second chan struct{} // closed by a second SIGTERM/SIGINT
	log    *slog.Logger
}

// exitNowAfter is how long a second signal lets the shutdown close the
// connections before the process exits anyway.
const exitNowAfter = 2 * time.Second

func handleSignals(log *slog.Logger) (context.Context, *signals) {
	s := &signals{ch: make(chan os.Signal, 4), hup: make(chan struct{}, 1), second: make(chan struct{}), log: log}
	// Registered before anything slow: a SIGHUP during the start must not
	// kill the process (its default action) but wait for the reload loop.
	signal.Notify(s.ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		stops := 0
		for sig := range s.ch {
			if sig == syscall.SIGHUP {
				select {
				case s.hup <- struct{}{}:
				default:
				}
				continue
			}
			stops++
			if stops == 1 {
				log.Info("signal: shutting down; send it again to exit at once", "signal", sig.String())
				cancel()
				continue
			}
			log.Warn("signal: second stop; exiting now", "signal", sig.String())
			close(s.second)
			time.AfterFunc(exitNowAfter, func() { os.Exit(1) })
			return
		}
	}()
	return ctx, s
}

func (s *signals) stop() { signal.Stop(s.ch) }

// reloads runs reload for each SIGHUP until ctx ends.
func (s *signals) reloads(ctx context.Context, reload func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.hup:
			reload()
		}
	}
}

// shutdown stops the gateway without touching a container: the session
// layer starts no retire timer from here on, the gateway stops accepting,
// tells every open session and waits up to timeout for them (or until a
// second signal), then closes what is left. The next start adopts the
// containers (Reconcile).
func shutdown(srv *gateway.Server, mgr *session.Manager, timeout time.Duration, sig *signals, log *slog.Logger) error {
	log.Info("shutting down: no new connections; open sessions are told and may finish", "shutdown_timeout", timeout)
	mgr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-sig.second:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := srv.Shutdown(ctx)
	log.Info("shut down; containers keep running for the next start")
	return err
}

// eventsFile is the events file, when events_file is set.
type eventsFile struct {
	w   *eventlog.Writer // nil: none
	log *slog.Logger
}

// openEvents opens events_file and subscribes it to every event stored.
func openEvents(cfg Config, st *store.Store, log *slog.Logger) (*eventsFile, error) {
	ef := &eventsFile{log: log}
	if cfg.EventsFile == "" {
		return ef, nil
	}
	path, err := filepath.Abs(cfg.EventsFile)
	if err != nil {
		return nil, fmt.Errorf("events_file: %w", err)
	}
	w, err := eventlog.Open(path, log, eventlog.Options{})
	if err != nil {
		return nil, fmt.Errorf("events_file: %w", err)
	}
	st.OnEvent(w.Record)
	ef.w = w
	log.Info("events file", "path", path)
	return ef, nil
}

// reopen is what a reload calls; nil without an events file.
func (ef *eventsFile) reopen() func() error {
	if ef.w == nil {
		return nil
	}
	return func() error {
		if err := ef.w.Reopen(); err != nil {
			return err
		}
		ef.log.Info("reload: events file reopened", "path", ef.w.Path())
		return nil
	}
}

// close writes what is queued, fsyncs and closes.
func (ef *eventsFile) close() {
	if ef.w == nil {
		return
	}
	if err := ef.w.Close(); err != nil {
		ef.log.Error("events file: close", "err", err)
	}
	if n := ef.w.Dropped(); n > 0 {
		ef.log.Warn("events file: events not written during this run", "dropped", n)
	}
}
