package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
)

// errFatal ends an scp session after its reason was sent to the client.
var errFatal = errors.New("scp: fatal protocol error")

// maxLine bounds a control line: OpenSSH's own limit is smaller still.
const maxLine = 8192

// scpConn is the wire of the legacy scp protocol: one-byte acks (\0),
// warnings (\x01 + line) and fatal errors (\x02 + line) in both
// directions, control lines ending in \n, raw file data.
type scpConn struct {
	ctx  context.Context
	in   *bufio.Reader
	out  io.Writer
	errs int // errors reported; any makes the exit status 1
}

func (c *scpConn) ack() error {
	_, err := c.out.Write([]byte{0})
	return err
}

// runErr reports a per-file error in-band, as OpenSSH's run_err does: the
// client prints it and goes on with the next file.
func (c *scpConn) runErr(format string, args ...any) error {
	c.errs++
	_, err := fmt.Fprintf(c.out, "\x01scp: "+format+"\n", args...)
	return err
}

// fatal reports an error that ends the session; the client exits at once.
func (c *scpConn) fatal(format string, args ...any) error {
	c.errs++
	if _, err := fmt.Fprintf(c.out, "\x02scp: "+format+"\n", args...); err != nil {
		return err
	}
	return errFatal
}

// readLine reads one control line without its \n. io.EOF means the client
// closed its side between records, which is how a transfer ends.
func (c *scpConn) readLine() (string, error) {
	if err := c.ctx.Err(); err != nil {
		return "", context.Cause(c.ctx)
	}
	var line []byte
	for {
		b, err := c.in.ReadByte()
		if err != nil {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return string(line), err
		}
		if b == '\n' {
			return string(line), nil
		}
		if len(line) >= maxLine {
			return "", c.fatal("protocol error: line too long")
		}
		line = append(line, b)
	}
}

// response reads the peer's answer to a record: nil when it acked, a
// warning (errWarned) when it reported an error with that file, errFatal
// when it gave up.
func (c *scpConn) response() error {
	b, err := c.in.ReadByte()
	if err != nil {
		return lostConn(err)
	}
	if b == 0 {
		return nil
	}
	if b != 1 && b != 2 {
		// Not a status: the line is an unexpected message; give up like scp.
		_ = c.in.UnreadByte() // a byte was just read: it can always go back
		b = 2
	}
	c.errs++
	if _, err := c.readLine(); err != nil && !errors.Is(err, errFatal) {
		return lostConn(err)
	}
	if b == 1 {
		return errWarned
	}
	return errFatal
}

// errWarned: the peer reported an error with this file; go on with the next.
var errWarned = errors.New("scp: peer reported an error")

func lostConn(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("scp: lost connection: %w", err)
}

// unixMode turns the permission bits of a C or D line into a FileMode.
func unixMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// modeBits is the inverse of unixMode for a file being sent.
func modeBits(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Mode & 0o7777
	}
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= syscall.S_ISUID
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= syscall.S_ISGID
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= syscall.S_ISVTX
	}
	return m
}
