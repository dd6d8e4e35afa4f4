package eventlog

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, decode(t, append(sc.Bytes(), '\n')))
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func ev(i int) store.Event {
	return store.Event{ID: int64(i), Time: time.Now(), Type: "container.launch", User: "u", Project: fmt.Sprint("p", i)}
}

// Everything recorded before Close is in the file, in order, each a line;
// the file and its new directory are created private.
func TestWriterCloseWritesAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "ds01", "events.jsonl")
	old := syscallUmask(0o077) // the file is 0640 whatever the umask
	defer syscallUmask(old)
	w, err := Open(path, discard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		w.Record(ev(i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, path)
	if len(got) != 1000 {
		t.Fatalf("%d lines, want 1000", len(got))
	}
	for i, m := range got {
		if p := m["details"].(map[string]any)["project"]; p != fmt.Sprint("p", i) {
			t.Fatalf("line %d is %v: out of order", i, p)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v, want 0640", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm()&0o007 != 0 {
		t.Errorf("dir mode %v: open to others", di.Mode().Perm())
	}
	w.Record(ev(1)) // after Close: dropped, no panic
	if err := w.Reopen(); err != ErrClosed {
		t.Errorf("Reopen after Close: %v", err)
	}
}

// An existing file is appended to and keeps its mode.
func TestWriterAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(`{"old":1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, discard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(ev(1))
	w.Close()
	if got := lines(t, path); len(got) != 2 || got[0]["old"] != 1.0 {
		t.Errorf("lines %v", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
}

// logrotate renames the file, then HUP: the old file keeps what was
// written before, the new one gets the rest.
func TestWriterReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	w, err := Open(path, discard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		w.Record(ev(i))
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Record(ev(3))
	w.Close()
	if n := len(lines(t, path+".1")); n != 3 {
		t.Errorf("rotated file has %d lines, want 3", n)
	}
	if n := len(lines(t, path)); n != 1 {
		t.Errorf("new file has %d lines, want 1", n)
	}
}

// A reopen that fails keeps writing to the old file.
func TestWriterReopenFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "events.jsonl")
	w, err := Open(path, discard(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(ev(0))
	if err := os.Rename(filepath.Join(dir, "sub"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	// Where the directory was, a file: the new events file cannot be made.
	if err := os.WriteFile(filepath.Join(dir, "sub"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen succeeded")
	}
	w.Record(ev(1))
	w.Close()
	if n := len(lines(t, filepath.Join(dir, "moved", "events.jsonl"))); n != 2 {
		t.Errorf("old file has %d lines, want 2", n)
	}
}

// Record never blocks: with the writer stuck, a full queue drops events,
// counts them, and the writer logs the count once it runs.
func TestWriterDropsWhenFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var logBuf syncBuf
	w := newWriter(path, slog.New(slog.NewTextHandler(&logBuf, nil)), Options{Queue: 4})
	f, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w.f = f // not running yet: nobody drains the queue
	start := time.Now()
	for i := range 10 {
		w.Record(ev(i))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Record blocked for %s", d)
	}
	if w.Dropped() != 6 {
		t.Errorf("dropped %d, want 6", w.Dropped())
	}
	go w.run()
	w.Close()
	if n := len(lines(t, path)); n != 4 {
		t.Errorf("%d lines, want the 4 queued", n)
	}
	if !strings.Contains(logBuf.String(), "dropped=6") {
		t.Errorf("drops not logged: %q", logBuf.String())
	}
}

// fsync follows a batch, but at most once per SyncEvery however many
// events arrive.
func TestWriterSyncBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "events.jsonl")
		w, err := Open(path, discard(), Options{SyncEvery: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		w.Record(ev(0))
		synctest.Wait()
		if n := w.syncs.Load(); n != 1 {
			t.Fatalf("after the first event: %d fsyncs, want 1", n)
		}
		for i := range 50 {
			time.Sleep(10 * time.Millisecond)
			w.Record(ev(i))
			synctest.Wait()
		}
		if n := w.syncs.Load(); n != 1 {
			t.Errorf("50 events within 0.5s: %d fsyncs, want still 1", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := w.syncs.Load(); n != 2 {
			t.Errorf("after SyncEvery: %d fsyncs, want 2", n)
		}
		time.Sleep(5 * time.Second) // nothing new: no fsync
		synctest.Wait()
		if n := w.syncs.Load(); n != 2 {
			t.Errorf("idle: %d fsyncs, want 2", n)
		}
	})
}

// What a recording goroutine (a login) pays per event, and what the
// writer pays per line.
func BenchmarkRecord(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "events.jsonl"), discard(), Options{Queue: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	e := ev(1)
	b.ResetTimer()
	for range b.N {
		w.Record(e)
	}
	b.StopTimer()
	w.Close()
}

func BenchmarkLine(b *testing.B) {
	e := store.Event{ID: 1, Time: time.Now(), Type: "transfer", User: "alice", Project: "thesis", Duration: time.Second,
		Details: `{"protocol":"sftp","bytes_in":123,"bytes_out":456,"files":3}`}
	for range b.N {
		Line(e)
	}
}
