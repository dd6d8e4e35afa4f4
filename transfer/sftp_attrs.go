package transfer

import (
	"encoding/binary"
	"io"
	"io/fs"
	"sync"
)

// pkg/sftp's request server drops the attributes of MKDIR packets (only
// setstat keeps them), yet the mode a client sends there is how `mkdir`
// and `put -r` keep a directory private. modeTap reads those modes off
// the stream on their way to the server; the handler collects them by
// path. The server runs MKDIR one at a time in arrival order, so a queue
// per path pairs each mode with its request. (OPEN never reaches the
// server: fastFiles serves it, with its mode.)

const (
	fxpOpen  = 3
	fxpMkdir = 14

	attrSize   = 0x1
	attrUIDGID = 0x2
	attrPerms  = 0x4

	// maxTapped bounds what a client can make the tap remember.
	maxTapped = 1024
)

// modeTap is the SFTP server's read loop. It passes the client's packets
// to pkg/sftp's request server unchanged, noting the requested modes of
// MKDIR, except the requests it serves itself: the EXTENDED requests that
// answer takes, and the requests on open files that fast takes.
type modeTap struct {
	r     io.Reader
	book  *modeBook
	start func(string) string // the path as the request server will clean it
	left  int                 // bytes of the current packet still to pass
	buf   []byte              // bytes read ahead, to pass before any more
	// answer, if set, sees the body of each small EXTENDED request and
	// returns true if it answered it itself (limits.go).
	answer func(body []byte) bool
	// fast, if set, serves OPEN and the requests on the files it opened
	// (sftp_fast.go); passed counts each packet given to the server.
	fast   *fastFiles
	passed func()
	body   []byte // a request read whole, reused
}

func (m *modeTap) Read(p []byte) (int, error) {
	if len(m.buf) > 0 {
		n := copy(p, m.buf)
		m.buf = m.buf[n:]
		return n, nil
	}
	if m.left > 0 {
		if len(p) > m.left {
			p = p[:m.left]
		}
		n, err := m.r.Read(p)
		m.left -= n
		return n, err
	}
	for {
		var hdr [5]byte
		if n, err := io.ReadFull(m.r, hdr[:]); err != nil {
			if n == 0 {
				return 0, err
			}
			return 0, io.ErrUnexpectedEOF
		}
		length := int(binary.BigEndian.Uint32(hdr[:4]))
		m.buf = append(m.buf[:0], hdr[:]...)
		if length < 1 {
			break // malformed: the server will say so
		}
		body := length - 1
		tapped := hdr[4] == fxpMkdir && body <= 64<<10
		answer := hdr[4] == fxpExtended && m.answer != nil && body <= maxAnswered
		fast := m.fast != nil && m.fast.takes(hdr[4]) && body <= maxSFTPPacket
		if !tapped && !answer && !fast {
			m.left = body
			break
		}
		if cap(m.body) < body {
			m.body = make([]byte, body, max(body, 4<<10))
		}
		b := m.body[:body]
		if _, err := io.ReadFull(m.r, b); err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		if fast {
			served, err := m.fast.serve(hdr[4], b)
			if err != nil {
				return 0, err
			}
			if served {
				m.buf = m.buf[:0]
				continue
			}
		}
		if answer && m.answer(b) {
			m.buf = m.buf[:0]
			continue // answered here: the server never sees it
		}
		if tapped {
			m.note(hdr[4], b)
		}
		m.buf = append(m.buf, b...)
		break
	}
	if m.passed != nil {
		m.passed()
	}
	return m.Read(p)
}

// note parses "id, path, attrs" and books the mode, if any.
func (m *modeTap) note(typ byte, b []byte) {
	b, ok := skip(b, 4) // id
	if !ok {
		return
	}
	p, b, ok := str(b)
	if !ok {
		return
	}
	mode, has := permsOf(b)
	m.book.put(typ, m.start(p), mode, has)
}

func permsOf(b []byte) (fs.FileMode, bool) {
	if len(b) < 4 {
		return 0, false
	}
	flags := binary.BigEndian.Uint32(b)
	b = b[4:]
	if flags&attrPerms == 0 {
		return 0, false
	}
	n := 0
	if flags&attrSize != 0 {
		n += 8
	}
	if flags&attrUIDGID != 0 {
		n += 8
	}
	if len(b) < n+4 {
		return 0, false
	}
	return fs.FileMode(binary.BigEndian.Uint32(b[n:]) & 0o777), true
}

func skip(b []byte, n int) ([]byte, bool) {
	if len(b) < n {
		return nil, false
	}
	return b[n:], true
}

func str(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > len(b)-4 {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// modeBook holds the tapped modes until their handler takes them.
type modeBook struct {
	mu    sync.Mutex
	q     map[bookKey][]bookedMode
	count int
}

type bookKey struct {
	typ  byte
	path string
}

type bookedMode struct {
	mode fs.FileMode
	has  bool
}

func (b *modeBook) put(typ byte, p string, mode fs.FileMode, has bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.q == nil || b.count >= maxTapped {
		// Requests the server answered without a handler (bad flags)
		// leave entries behind: start over rather than grow.
		b.q, b.count = map[bookKey][]bookedMode{}, 0
	}
	k := bookKey{typ, p}
	b.q[k] = append(b.q[k], bookedMode{mode, has})
	b.count++
}

// take returns the mode the client sent with the oldest pending typ
// request on p, if it sent one.
func (b *modeBook) take(typ byte, p string) (fs.FileMode, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := bookKey{typ, p}
	q := b.q[k]
	if len(q) == 0 {
		return 0, false
	}
	if len(q) == 1 {
		delete(b.q, k)
	} else {
		b.q[k] = q[1:]
	}
	b.count--
	return q[0].mode, q[0].has
}
