package transfer

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// The child's stdin and stdout pipes must be waited on by the runtime's
// poller (a read deadline works only then), not by a blocked thread.
func TestPolledPipeUsesThePoller(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := polled(p[0], "r"), polled(p[1], "w")
	defer r.Close()
	defer w.Close()
	if err := r.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatalf("read deadline on the polled pipe: %v", err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of an empty pipe: %v, want the deadline", err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := r.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if n, err := r.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read = %d %v %q, want x", n, err, b[:n])
	}
}
