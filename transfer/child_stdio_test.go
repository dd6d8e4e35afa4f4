package transfer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
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

// A reply's header and data reach the gateway whole and in order, also
// when the pipe takes the data in several writes.
func TestPacketWriterJoinsHeaderAndData(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := polled(p[0], "r"), polled(p[1], "w")
	defer r.Close()
	pw := &packetWriter{out: w}
	data := make([]byte, 3<<20) // more than the pipe holds
	for i := range data {
		data[i] = byte(i * 7)
	}
	hdr := binary.BigEndian.AppendUint32(nil, uint32(1+4+4+len(data)))
	hdr = append(hdr, 103)
	hdr = binary.BigEndian.AppendUint32(hdr, 42)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(data)))
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	if n, err := pw.Write(hdr); n != len(hdr) || err != nil {
		t.Fatalf("header: %d %v", n, err)
	}
	if n, err := pw.Write(data); n != len(data) || err != nil {
		t.Fatalf("data: %d %v", n, err)
	}
	w.Close()
	want := append(append([]byte(nil), hdr...), data...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes, want the %d written, in order", len(b), len(want))
	}
}

// The raw pipe moves more than the pipe holds, whole and in order, in
// both directions, waiting on the poller when the pipe is full or empty;
// a blocking descriptor is left to os.File.
func TestRawPipe(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := newRawPipe(polled(p[0], "r")), newRawPipe(polled(p[1], "w"))
	if r == nil || w == nil {
		t.Fatal("no raw pipe for a non-blocking pipe")
	}
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 13)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	time.Sleep(10 * time.Millisecond) // let the reader find the pipe empty
	if n, err := w.Write(data); n != len(data) || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	w.Close()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("read %d bytes, want the %d written, in order", len(b), len(data))
	}
	r.Close()

	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newRawPipe(f) != nil {
		t.Error("a raw pipe for a blocking descriptor")
	}
}
