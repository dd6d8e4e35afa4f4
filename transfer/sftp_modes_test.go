package transfer

import (
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// rawSFTP speaks SFTP packets directly: pkg/sftp's client cannot send a
// mode with OPEN or MKDIR, as OpenSSH's put and mkdir do.
type rawSFTP struct {
	w  io.Writer
	r  io.Reader
	id uint32
}

func (c *rawSFTP) send(t *testing.T, typ byte, parts ...any) {
	t.Helper()
	var b []byte
	if typ != 1 { // INIT has a version, not an id
		c.id++
		b = binary.BigEndian.AppendUint32(b, c.id)
	}
	for _, p := range parts {
		switch v := p.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(b)+1))
	pkt = append(pkt, typ)
	if _, err := c.w.Write(append(pkt, b...)); err != nil {
		t.Fatal(err)
	}
}

// recv returns the type and body of the next packet.
func (c *rawSFTP) recv(t *testing.T) (byte, []byte) {
	t.Helper()
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	return hdr[4], body
}

func TestSFTPModesFromClient(t *testing.T) {
	f := newFixture(t)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
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
	if typ, _ := c.recv(t); typ != 2 {
		t.Fatalf("got packet %d, want VERSION", typ)
	}
	const (
		creatWrite = 0x02 | 0x08 | 0x10
		perms      = 0x4
		sizePerms  = 0x1 | 0x4
	)
	// OPEN "run.sh" with mode 0755 (and a size, which must be skipped).
	c.send(t, 3, "run.sh", uint32(creatWrite), uint32(sizePerms), uint32(0), uint32(0), uint32(0o755))
	typ, body := c.recv(t)
	if typ != 102 {
		t.Fatalf("open: got packet %d, want HANDLE", typ)
	}
	handle, _, _ := str(body[4:])
	c.send(t, 4, handle) // CLOSE
	c.recv(t)
	// MKDIR "private" with mode 0700; then "plain" with no mode.
	c.send(t, 14, "private", uint32(perms), uint32(0o700))
	c.recv(t)
	c.send(t, 14, "plain", uint32(0))
	c.recv(t)
	// OPEN without a mode: 0666 &^ umask.
	c.send(t, 3, "/workspace/data", uint32(creatWrite), uint32(0))
	_, body = c.recv(t)
	handle, _, _ = str(body[4:])
	c.send(t, 4, handle)
	c.recv(t)
	cw.Close()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	for name, want := range map[string]fs.FileMode{
		"run.sh":  0o755,
		"private": fs.ModeDir | 0o700,
		"plain":   fs.ModeDir | 0o755,
		"data":    0o644,
	} {
		fi, err := os.Stat(filepath.Join(f.ws, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
}
