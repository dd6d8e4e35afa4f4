package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fastSession is a raw SFTP session with the server, past INIT.
type fastSession struct {
	c    *rawSFTP
	cw   io.WriteCloser
	done chan error
}

func startFast(t *testing.T, f fixture) *fastSession {
	t.Helper()
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	s := &fastSession{c: &rawSFTP{w: cw, r: cr}, cw: cw, done: make(chan error, 1)}
	go func() {
		_, err := ServeSFTP(context.Background(), f.mounts(), pipeRWC{sr, sw})
		sw.Close()
		s.done <- err
	}()
	t.Cleanup(func() {
		cw.Close()
		cr.Close()
		// Unexpected EOF: a test that left a file open.
		if err := <-s.done; err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("serve: %v", err)
		}
	})
	s.c.send(t, 1, uint32(3)) // INIT
	if typ, _ := s.c.recv(t); typ != fxpVersion {
		t.Fatalf("got packet %d, want VERSION", typ)
	}
	return s
}

// open opens p and returns the handle.
func (s *fastSession) open(t *testing.T, p string, pflags uint32) string {
	t.Helper()
	s.c.send(t, fxpOpen, p, pflags, uint32(0))
	typ, body := s.c.recv(t)
	if typ != fxpHandle {
		t.Fatalf("open %s: got packet %d %q, want HANDLE", p, typ, body)
	}
	h, _, _ := str(body[4:])
	return h
}

// status reads the next reply, which must be a STATUS.
func (s *fastSession) status(t *testing.T) (uint32, string) {
	t.Helper()
	typ, body := s.c.recv(t)
	return statusOf(t, typ, body)
}

// statusOf returns the code and message of a STATUS body.
func statusOf(t *testing.T, typ byte, body []byte) (uint32, string) {
	t.Helper()
	if typ != fxpStatus || len(body) < 8 {
		t.Fatalf("got packet %d %q, want STATUS", typ, body)
	}
	msg, _, _ := str(body[8:])
	return binary.BigEndian.Uint32(body[4:]), msg
}

func writeWS(t *testing.T, f fixture, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.ws, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A read that reaches the end of the file returns what is there; the
// next one gets EOF, as from pkg/sftp and sftp-server.
func TestFastReadAtEOF(t *testing.T) {
	f := newFixture(t)
	writeWS(t, f, "small", []byte("hello, world"))
	s := startFast(t, f)
	h := s.open(t, "small", 0x01)
	s.c.send(t, fxpRead, h, uint32(0), uint32(7), uint32(32<<10))
	typ, body := s.c.recv(t)
	if got, _, _ := str(body[4:]); typ != fxpData || got != "world" || binary.BigEndian.Uint32(body) != s.c.id {
		t.Fatalf("read at 7: packet %d %q, want DATA world", typ, body)
	}
	s.c.send(t, fxpRead, h, uint32(0), uint32(12), uint32(32<<10))
	if code, msg := s.status(t); code != fxEOF || msg != "EOF" {
		t.Fatalf("read at the end: status %d %q, want EOF", code, msg)
	}
	s.c.send(t, fxpClose, h)
	if code, _ := s.status(t); code != fxOK {
		t.Fatalf("close: status %d", code)
	}
}

// A handle that was closed, or never given, gets pkg/sftp's answer to an
// unknown handle; a directory's handle still reaches pkg/sftp.
func TestFastUnknownHandle(t *testing.T) {
	f := newFixture(t)
	writeWS(t, f, "a", []byte("a"))
	s := startFast(t, f)
	h := s.open(t, "a", 0x01)
	s.c.send(t, fxpClose, h)
	s.c.recv(t)
	for _, h := range []string{h, "f999", "12345"} {
		s.c.send(t, fxpRead, h, uint32(0), uint32(0), uint32(10))
		if code, msg := s.status(t); code != fxFailure || msg != "bad file descriptor" {
			t.Errorf("read on handle %q: status %d %q, want FAILURE bad file descriptor", h, code, msg)
		}
	}
	s.c.send(t, fxpClose, h)
	if code, _ := s.status(t); code != fxFailure {
		t.Errorf("second close: status %d, want FAILURE", code)
	}
	// A directory handle is pkg/sftp's: READDIR works.
	s.c.send(t, 11, ".") // OPENDIR
	typ, body := s.c.recv(t)
	if typ != fxpHandle {
		t.Fatalf("opendir: packet %d %q", typ, body)
	}
	dh, _, _ := str(body[4:])
	s.c.send(t, fxpReaddir, dh)
	if typ, body := s.c.recv(t); typ != 104 || !bytes.Contains(body, []byte("a")) { // NAME
		t.Fatalf("readdir: packet %d %q, want NAME", typ, body)
	}
	s.c.send(t, fxpClose, dh)
	if code, _ := s.status(t); code != fxOK {
		t.Errorf("close of a directory handle: status %d", code)
	}
	// And a file's handle is no directory.
	h = s.open(t, "a", 0x01)
	s.c.send(t, fxpReaddir, h)
	if code, _ := s.status(t); code != fxFailure {
		t.Errorf("readdir on a file handle: status %d, want FAILURE", code)
	}
	s.c.send(t, fxpClose, h)
	s.status(t)
}

// A session that ends with a file still open was cut short, as pkg/sftp
// reported it.
func TestFastOpenAtEnd(t *testing.T) {
	f := newFixture(t)
	writeWS(t, f, "a", []byte("a"))
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := ServeSFTP(context.Background(), f.mounts(), pipeRWC{sr, sw})
		sw.Close()
		done <- err
	}()
	s := &fastSession{c: &rawSFTP{w: cw, r: cr}}
	s.c.send(t, 1, uint32(3))
	s.c.recv(t)
	s.open(t, "a", 0x01)
	cw.Close()
	if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("serve: %v, want unexpected EOF", err)
	}
}

// A read asks for at most what the limits reply promised.
func TestFastReadCapped(t *testing.T) {
	f := newFixture(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), (maxSFTPData+4096)/16)
	writeWS(t, f, "big", data)
	s := startFast(t, f)
	h := s.open(t, "big", 0x01)
	s.c.send(t, fxpRead, h, uint32(0), uint32(1), uint32(1<<30))
	typ, body := s.c.recv(t)
	got, _, _ := str(body[4:])
	if typ != fxpData || got != string(data[1:1+maxSFTPData]) {
		t.Fatalf("read of 1 GiB: packet %d with %d bytes, want DATA with %d", typ, len(got), maxSFTPData)
	}
}

// Opened for writing alone, a handle refuses reads, and the converse;
// FSTAT describes the open file and FSETSTAT changes it.
func TestFastHandleModes(t *testing.T) {
	f := newFixture(t)
	writeWS(t, f, "r", []byte("data"))
	s := startFast(t, f)
	w := s.open(t, "new", 0x02|0x08) // WRITE|CREAT
	s.c.send(t, fxpWrite, w, uint32(0), uint32(0), "abc")
	if code, _ := s.status(t); code != fxOK {
		t.Fatalf("write: status %d", code)
	}
	s.c.send(t, fxpRead, w, uint32(0), uint32(0), uint32(3))
	if code, _ := s.status(t); code != fxFailure {
		t.Errorf("read on a write handle: status %d, want FAILURE", code)
	}
	s.c.send(t, fxpFsetstat, w, uint32(attrPerms), uint32(0o600))
	if code, msg := s.status(t); code != fxOK {
		t.Fatalf("fsetstat: status %d %q", code, msg)
	}
	s.c.send(t, fxpFstat, w)
	typ, body := s.c.recv(t)
	if typ != fxpAttrs || len(body) < 4+4+8+12 {
		t.Fatalf("fstat: packet %d %q", typ, body)
	}
	size, mode := binary.BigEndian.Uint64(body[8:]), binary.BigEndian.Uint32(body[24:])
	if size != 3 || mode != 0o100600 {
		t.Errorf("fstat: size %d mode %o, want 3 and 100600", size, mode)
	}
	r := s.open(t, "r", 0x01)
	s.c.send(t, fxpWrite, r, uint32(0), uint32(0), "xyz")
	if code, _ := s.status(t); code != fxFailure {
		t.Errorf("write on a read handle: status %d, want FAILURE", code)
	}
	if b, _ := os.ReadFile(filepath.Join(f.ws, "r")); string(b) != "data" {
		t.Errorf("read-only file now %q", b)
	}
	// No such file, and a path out of the workspace, as sftp-server says.
	s.c.send(t, fxpOpen, "nosuch", uint32(0x01), uint32(0))
	if code, _ := s.status(t); code != fxNoSuchFile {
		t.Errorf("open of a missing file: status %d, want NO_SUCH_FILE", code)
	}
	if err := os.Symlink("../outside/secret.txt", filepath.Join(f.ws, "out")); err != nil {
		t.Fatal(err)
	}
	s.c.send(t, fxpOpen, "out", uint32(0x01), uint32(0))
	if code, _ := s.status(t); code != fxPermission {
		t.Errorf("open through a link out of the workspace: status %d, want PERMISSION_DENIED", code)
	}
}

// Many requests in flight at once, file reads among directory listings
// and stats that pkg/sftp serves: every reply arrives whole, once, with
// its request's id and the right bytes; and a request pkg/sftp serves is
// done before a later one on an open file (a REMOVE, then an exclusive
// create of the same name).
func TestFastInterleavedRequests(t *testing.T) {
	f := newFixture(t)
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	writeWS(t, f, "big", data)
	writeWS(t, f, "gone", []byte("old"))
	s := startFast(t, f)
	h := s.open(t, "big", 0x01)

	// Build the whole burst first, then write it while reading replies.
	var burst bytes.Buffer
	b := &rawSFTP{w: &burst, id: s.c.id}
	want := map[uint32]string{} // id -> what the reply must be
	const chunk = 64 << 10
	for i := 0; i < len(data)/chunk; i++ {
		off := uint32(i * chunk)
		b.send(t, fxpRead, h, uint32(0), off, uint32(chunk))
		want[b.id] = fmt.Sprintf("data %d", off)
		switch i % 3 {
		case 0:
			b.send(t, 7, "big") // LSTAT
			want[b.id] = "attrs"
		case 1:
			b.send(t, 16, ".") // REALPATH
			want[b.id] = "name"
		}
	}
	b.send(t, 13, "gone") // REMOVE, served by pkg/sftp
	want[b.id] = "ok"
	b.send(t, fxpOpen, "gone", uint32(0x02|0x08|0x20), uint32(0)) // WRITE|CREAT|EXCL
	want[b.id] = "handle"
	go func() {
		_, _ = s.cw.Write(burst.Bytes())
	}()
	for len(want) > 0 {
		typ, body := s.c.recv(t)
		id := binary.BigEndian.Uint32(body)
		w, ok := want[id]
		if !ok {
			t.Fatalf("reply %d for id %d, which has none pending", typ, id)
		}
		delete(want, id)
		var off int
		if _, err := fmt.Sscanf(w, "data %d", &off); err == nil {
			got, _, _ := str(body[4:])
			if typ != fxpData || got != string(data[off:off+chunk]) {
				t.Fatalf("read at %d: packet %d with %d bytes, not the file's", off, typ, len(got))
			}
			continue
		}
		switch {
		case w == "attrs" && typ != fxpAttrs, w == "name" && typ != 104, w == "handle" && typ != fxpHandle:
			t.Fatalf("id %d: packet %d %q, want %s", id, typ, body, w)
		case w == "ok":
			if code, msg := statusOf(t, typ, body); code != fxOK {
				t.Fatalf("remove: status %d %q", code, msg)
			}
		}
	}
}

// Truncated or lying requests on the fast path (a hostile client) get
// BAD_MESSAGE, touch nothing, and the session goes on.
func TestFastMalformedRequests(t *testing.T) {
	f := newFixture(t)
	writeWS(t, f, "a", []byte("abc"))
	s := startFast(t, f)
	h := s.open(t, "a", 0x01|0x02)
	bad := []struct {
		name   string
		typ    byte
		fields []any
	}{
		{"OPEN without flags", fxpOpen, []any{"new"}},
		{"READ without offset", fxpRead, []any{h}},
		{"READ without length", fxpRead, []any{h, uint32(0), uint32(0)}},
		{"WRITE without offset", fxpWrite, []any{h, uint32(0)}},
		{"WRITE whose data is longer than the packet", fxpWrite, []any{h, uint32(0), uint32(0), uint32(1 << 30)}},
	}
	for _, b := range bad {
		s.c.send(t, b.typ, b.fields...)
		if code, _ := s.status(t); code != fxBadMessage {
			t.Errorf("%s: status %d, want BAD_MESSAGE", b.name, code)
		}
	}
	if _, err := os.Lstat(filepath.Join(f.ws, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a truncated OPEN made the file: %v", err)
	}
	s.c.send(t, fxpRead, h, uint32(0), uint32(0), uint32(10))
	if typ, body := s.c.recv(t); typ != fxpData {
		t.Fatalf("read after the bad requests: packet %d %q, want DATA", typ, body)
	} else if got, _, _ := str(body[4:]); got != "abc" {
		t.Fatalf("read after the bad requests: %q, want abc", got)
	}
	s.c.send(t, fxpClose, h)
	if code, _ := s.status(t); code != fxOK {
		t.Fatalf("close: status %d", code)
	}
}
