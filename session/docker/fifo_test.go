package docker

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Our read end opens at once, and reading waits for the process's writer
// instead of seeing end-of-file before it has come.
func TestFIFOReadWaitsForWriter(t *testing.T) {
	p := mkfifo(t)
	r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if err := awaitWriter(r); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("with no writer yet: %v, want to wait until the deadline", err)
	}
	r.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		w, err := os.OpenFile(p, os.O_WRONLY, 0) // the process, opening late
		if err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // open, not yet written
		w.Write([]byte("late output"))
		w.Close()
	}()
	if err := awaitWriter(r); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "late output" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// A writer that comes and goes without writing is an empty stream.
func TestFIFOWriterClosesSilently(t *testing.T) {
	p := mkfifo(t)
	r, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := awaitWriter(r); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v, want an empty stream", b, err)
	}
}

// Stdin written, and even ended, before the process opens its end reaches
// it whole, with end-of-file: nothing is lost and the process's open does
// not hang.
func TestFIFOStdinBeforeTheProcessOpens(t *testing.T) {
	p := mkfifo(t)
	in := newFIFOStdin(p)
	defer in.abort()
	wrote := make(chan error, 1)
	go func() {
		_, err := in.Write([]byte("early input"))
		in.Close()
		wrote <- err
	}()
	time.Sleep(100 * time.Millisecond) // the process is slow to start
	select {
	case err := <-wrote:
		t.Fatalf("write returned before any reader: %v", err)
	default:
	}
	got := make(chan string, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_RDONLY, 0) // the process's shell: a blocking open
		if err != nil {
			got <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- string(b)
	}()
	select {
	case s := <-got:
		if s != "early input" {
			t.Fatalf("the process read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the process never got its input and end-of-file")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// A process that never opens its stdin holds no one: abort ends the
// waiting writer.
func TestFIFOStdinAbort(t *testing.T) {
	in := newFIFOStdin(mkfifo(t))
	wrote := make(chan error, 1)
	go func() {
		_, err := in.Write([]byte("x"))
		wrote <- err
	}()
	time.Sleep(20 * time.Millisecond)
	in.abort()
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("a write with no reader succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abort did not end a waiting write")
	}
}
