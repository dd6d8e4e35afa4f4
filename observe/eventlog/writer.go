package eventlog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// Defaults for Options.
const (
	DefaultQueue     = 4096
	DefaultSyncEvery = time.Second
)

// maxBatchBytes bounds what one write(2) carries; lines are never split.
const maxBatchBytes = 256 << 10

// Options tune a Writer; zero values mean the defaults.
type Options struct {
	// Queue is how many events may wait for the writer. Beyond it events
	// are dropped (counted and logged), never waited for: the recording
	// goroutine may be a login.
	Queue int
	// SyncEvery bounds the fsyncs: at most one per SyncEvery, after the
	// batch that made the file dirty.
	SyncEvery time.Duration
}

// ErrClosed is returned by a Writer used after Close.
var ErrClosed = errors.New("events file closed")

// Writer appends events to a file, one JSON line each (Line). Record
// queues and returns at once; one goroutine writes what is queued in
// batches and fsyncs them. Reopen starts a new file at the same path
// (after logrotate renamed the old one); Close writes what is queued,
// fsyncs and closes.
type Writer struct {
	path string
	log  *slog.Logger
	opts Options

	q      chan store.Event
	reopen chan chan error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // Close's result, set before done closes

	dropped atomic.Int64 // queue full
	lost    atomic.Int64 // write failed
	syncs   atomic.Int64 // fsyncs done (tests)

	// Owned by the run goroutine.
	f        *os.File
	buf      []byte
	dirty    bool
	lastSync time.Time
	reported int64 // drops logged so far
	failing  bool  // the last write failed (logged once per streak)
}

// Open opens (creating it and its directory) the events file at path and
// starts the writer.
func Open(path string, log *slog.Logger, opts Options) (*Writer, error) {
	w := newWriter(path, log, opts)
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	go w.run()
	return w, nil
}

func newWriter(path string, log *slog.Logger, opts Options) *Writer {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = DefaultSyncEvery
	}
	return &Writer{
		path: path, log: log, opts: opts,
		q:      make(chan store.Event, opts.Queue),
		reopen: make(chan chan error),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// openFile opens path for appending. A new file gets mode 0640 (events
// name users and projects: not for everyone), whatever the umask; an
// existing one keeps the mode its admin gave it.
func openFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640) //nolint:gosec // DS01's mode: log shippers read it through the group
	if err == nil {
		if err := f.Chmod(0o640); err != nil {
			f.Close()
			return nil, fmt.Errorf("events file: %w", err)
		}
		return f, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("events file: %w", err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	return f, nil
}

// Path is the file's path.
func (w *Writer) Path() string { return w.path }

// Record queues e for the file. It never blocks: with the queue full, e
// is dropped and counted, and the writer logs the count.
func (w *Writer) Record(e store.Event) {
	select {
	case w.q <- e:
	default:
		w.dropped.Add(1)
	}
}

// Dropped is how many events were not written: queue full or write
// failed.
func (w *Writer) Dropped() int64 { return w.dropped.Load() + w.lost.Load() }

// Reopen writes and fsyncs what is queued, then continues in a new file
// at the path: the one a log rotation moved stays complete. If the new
// file cannot be opened the old one is kept, and the error returned.
func (w *Writer) Reopen() error {
	reply := make(chan error, 1)
	select {
	case w.reopen <- reply:
		return <-reply
	case <-w.done:
		return ErrClosed
	}
}

// Close writes what is queued, fsyncs and closes the file. Events
// recorded after Close are dropped.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.err
}

func (w *Writer) run() {
	defer close(w.done)
	var tick <-chan time.Time // armed while a sync is due
	var timer *time.Timer
	for {
		select {
		case e := <-w.q:
			w.add(e)
			w.drain()
			w.flush()
			w.reportDrops()
			if w.dirty && tick == nil {
				if wait := w.opts.SyncEvery - time.Since(w.lastSync); wait > 0 {
					timer = time.NewTimer(wait)
					tick = timer.C
				} else {
					w.sync()
				}
			}
		case <-tick:
			tick = nil
			w.sync()
		case reply := <-w.reopen:
			reply <- w.reopenFile()
		case <-w.stop:
			if timer != nil {
				timer.Stop()
			}
			w.drain()
			w.flush()
			w.reportDrops()
			w.sync()
			w.err = w.f.Close()
			return
		}
	}
}

// add appends e's line to the batch, writing the batch first if it is
// full.
func (w *Writer) add(e store.Event) {
	line := Line(e)
	if len(w.buf)+len(line) > maxBatchBytes {
		w.flush()
	}
	w.buf = append(w.buf, line...)
}

// drain takes what is queued now, without waiting.
func (w *Writer) drain() {
	for {
		select {
		case e := <-w.q:
			w.add(e)
		default:
			return
		}
	}
}

// flush writes the batch with one write(2) (O_APPEND: whole lines at the
// end, even beside another writer).
func (w *Writer) flush() {
	if len(w.buf) == 0 {
		return
	}
	n, err := w.f.Write(w.buf)
	if n > 0 {
		w.dirty = true
	}
	if err != nil {
		lines := countLines(w.buf[n:])
		w.lost.Add(lines)
		if !w.failing {
			w.log.Error("events file: write failed; events lost until it works again", "path", w.path, "lost", lines, "err", err)
		}
		w.failing = true
	} else if w.failing {
		w.log.Info("events file: writing again", "path", w.path, "lost", w.lost.Load())
		w.failing = false
	}
	w.buf = w.buf[:0]
}

func countLines(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

func (w *Writer) sync() {
	if !w.dirty {
		return
	}
	if err := w.f.Sync(); err != nil {
		w.log.Warn("events file: fsync", "path", w.path, "err", err)
	}
	w.dirty, w.lastSync = false, time.Now()
	w.syncs.Add(1)
}

// reportDrops logs the events dropped since the last report: one line
// per batch at most, never one per event.
func (w *Writer) reportDrops() {
	if n := w.dropped.Load(); n > w.reported {
		w.log.Warn("events file: queue full, events dropped", "path", w.path, "dropped", n-w.reported, "dropped_total", n, "queue", cap(w.q))
		w.reported = n
	}
}

func (w *Writer) reopenFile() error {
	w.drain()
	w.flush()
	w.sync()
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	old := w.f
	w.f = f
	if err := old.Close(); err != nil {
		w.log.Warn("events file: close the old file", "path", w.path, "err", err)
	}
	return nil
}
