package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// OpenSSH's sftp moves 255 KiB per request only from a server that
// lists and answers limits@openssh.com; else 32 KiB, 8x the round trips.
func TestSFTPLimitsExtension(t *testing.T) {
	f := newFixture(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), maxSFTPData/16+100)
	if err := os.WriteFile(filepath.Join(f.ws, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	done := make(chan error)
	go func() {
		_, err := ServeSFTP(context.Background(), f.mounts(), pipeRWC{sr, sw})
		sw.Close()
		done <- err
	}()
	c := &rawSFTP{w: cw, r: cr}
	c.send(t, 1, uint32(3)) // INIT
	typ, body := c.recv(t)
	if typ != fxpVersion {
		t.Fatalf("got packet %d, want VERSION", typ)
	}
	exts := map[string]string{}
	for b := body[4:]; len(b) > 0; {
		name, rest, ok := str(b)
		data, rest2, ok2 := str(rest)
		if !ok || !ok2 {
			t.Fatalf("malformed VERSION %q", body)
		}
		exts[name], b = data, rest2
	}
	if exts[limitsExt] != "1" || exts["posix-rename@openssh.com"] != "1" {
		t.Fatalf("VERSION extensions %v: want limits@openssh.com 1 beside pkg/sftp's", exts)
	}

	c.send(t, fxpExtended, limitsExt)
	typ, body = c.recv(t)
	if typ != fxpExtendedReply || len(body) != 4+32 || binary.BigEndian.Uint32(body) != c.id {
		t.Fatalf("limits reply: packet %d %x", typ, body)
	}
	var lim [4]uint64
	for i := range lim {
		lim[i] = binary.BigEndian.Uint64(body[4+8*i:])
	}
	if lim != [4]uint64{maxSFTPPacket, maxSFTPData, maxSFTPData, 0} {
		t.Fatalf("limits %v", lim)
	}

	// Another extension still reaches the server.
	c.send(t, fxpExtended, "nosuch@example.com")
	if typ, _ = c.recv(t); typ != 101 {
		t.Fatalf("unknown extension: got packet %d, want STATUS", typ)
	}

	// A read of the promised size comes back whole.
	c.send(t, 3, "big", uint32(0x01), uint32(0)) // OPEN read
	typ, body = c.recv(t)
	if typ != 102 {
		t.Fatalf("open: got packet %d, want HANDLE", typ)
	}
	handle, _, _ := str(body[4:])
	off := uint64(100)
	c.send(t, 5, handle, uint32(off>>32), uint32(off), uint32(maxSFTPData)) // READ
	typ, body = c.recv(t)
	got, _, _ := str(body[4:])
	if typ != 103 || got != string(data[off:off+maxSFTPData]) {
		t.Fatalf("read %d bytes (packet %d), want %d", len(got), typ, maxSFTPData)
	}
	c.send(t, 4, handle)
	c.recv(t)
	cw.Close()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// The answer never lands inside a packet the server is writing in parts.
func TestSFTPLimitsAnswerBetweenPackets(t *testing.T) {
	var out bytes.Buffer
	l := &limitsRWC{w: nopCloser{&out}}
	hdr := []byte{0, 0, 0, 9 + 3, 103, 0, 0, 0, 7, 0, 0, 0, 3} // DATA id 7, 3 bytes
	if _, err := l.Write(hdr); err != nil {
		t.Fatal(err)
	}
	req := binary.BigEndian.AppendUint32(nil, 42)
	req = appendString(req, limitsExt)
	if !l.answer(req) {
		t.Fatal("limits request not answered")
	}
	if out.Len() != len(hdr) {
		t.Fatalf("answer written inside a packet: %x", out.Bytes())
	}
	if _, err := l.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	b := out.Bytes()
	if !bytes.Equal(b[:len(hdr)+3], append(hdr, "abc"...)) || b[len(hdr)+3+4] != fxpExtendedReply {
		t.Fatalf("stream %x", b)
	}
	if l.answer(appendString(binary.BigEndian.AppendUint32(nil, 43), "statvfs@openssh.com")) {
		t.Fatal("answered another extension")
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
