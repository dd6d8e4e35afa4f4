package transfer

import (
	"encoding/binary"
	"io"
	"sync"
)

// OpenSSH's sftp (8.7 and later) asks a server that lists the
// limits@openssh.com extension how much it may read and write per
// request, and then moves up to 255 KiB a request; without it, 32 KiB.
// pkg/sftp neither lists nor answers the extension, so a 1 GiB get took
// 32768 round trips through client, gateway and child where OpenSSH's
// sftp-server takes 4112, and lost to it by half on a loaded machine.
// limitsRWC lists the extension in the server's VERSION reply and
// answers the request itself, between the server's packets.

const (
	fxpVersion       = 2
	fxpExtended      = 200
	fxpExtendedReply = 201

	limitsExt = "limits@openssh.com"
	// maxAnswered bounds the EXTENDED requests modeTap reads whole to
	// look at their name; bigger ones pass through unread.
	maxAnswered = 1024
	// maxSFTPPacket is pkg/sftp's limit on an incoming packet; a read or
	// write carries at most that less room for its header, as in
	// OpenSSH's sftp-server.
	maxSFTPPacket = 256 << 10
	maxSFTPData   = maxSFTPPacket - 1024
)

// limitsRWC is the server's stream: it adds limits@openssh.com to the
// VERSION reply and writes the answers to limits requests, never inside
// another packet (pkg/sftp writes one as a header, then its data). It
// also counts the requests pkg/sftp has not answered yet, for fastFiles.
type limitsRWC struct {
	io.Reader
	w io.WriteCloser

	mu       sync.Mutex
	version  bool   // the VERSION reply has gone
	left     int    // bytes of the packet being written still to come
	inPacket bool   // a packet of pkg/sftp's is being written
	queued   []byte // answers waiting for that packet's end
	pending  int    // requests passed to pkg/sftp and not answered yet
	closed   bool
	idle     sync.Cond // pending reached 0, or the stream closed
}

func (l *limitsRWC) Close() error {
	l.mu.Lock()
	l.closed = true
	l.idle.Broadcast()
	l.mu.Unlock()
	return l.w.Close()
}

// passed counts a request the read loop passed to pkg/sftp: every
// request gets exactly one reply from it (an unknown one a status).
func (l *limitsRWC) passed() {
	l.mu.Lock()
	l.pending++
	l.mu.Unlock()
}

// replied ends a packet of pkg/sftp's. Called with mu held.
func (l *limitsRWC) replied() {
	l.inPacket = false
	if l.pending > 0 {
		l.pending--
	}
	if l.pending == 0 {
		l.idle.Broadcast()
	}
}

// acquire waits until pkg/sftp has answered every request passed to it
// and has no packet of its own half written, then holds the stream for
// a request fastFiles serves: that request runs after all those before
// it, as a client expects (a REMOVE, then an OPEN with O_EXCL), and its
// reply is written whole. The read loop, which calls it, is the only
// source of requests, so none can start meanwhile. The caller writes
// with the writer returned and then calls release; on an error the
// stream is closed and nothing is held.
func (l *limitsRWC) acquire() (io.Writer, error) {
	l.mu.Lock()
	if l.idle.L == nil {
		l.idle.L = &l.mu
	}
	for (l.pending > 0 || l.left > 0) && !l.closed {
		l.idle.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return nil, io.ErrClosedPipe
	}
	return l.w, nil
}

func (l *limitsRWC) release() { l.mu.Unlock() }

func (l *limitsRWC) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left == 0 && len(p) >= 5 {
		l.left = 4 + int(binary.BigEndian.Uint32(p[:4]))
		l.inPacket = true
		if !l.version && p[4] == fxpVersion && l.left == len(p) {
			l.version = true
			n := len(p)
			q := appendString(appendString(append([]byte(nil), p...), limitsExt), "1")
			binary.BigEndian.PutUint32(q, uint32(len(q)-4)) //nolint:gosec // a few hundred bytes
			l.left = 0
			l.replied()
			if _, err := l.w.Write(q); err != nil {
				return 0, err
			}
			return n, nil
		}
	}
	n, err := l.w.Write(p)
	l.left -= n
	if l.left < 0 {
		l.left = 0 // not a packet as announced: let the client judge it
	}
	if err != nil {
		// The stream is broken: nothing more of this packet will come,
		// and whoever writes next meets the error too.
		l.left = 0
	}
	if l.left == 0 && l.inPacket {
		l.replied()
	}
	if err != nil || l.left > 0 || len(l.queued) == 0 {
		return n, err
	}
	_, err = l.w.Write(l.queued)
	l.queued = l.queued[:0]
	return n, err
}

// answer is modeTap's hook: it answers a limits request, and leaves any
// other EXTENDED request to the server.
func (l *limitsRWC) answer(body []byte) bool {
	if len(body) < 4 {
		return false
	}
	name, _, ok := str(body[4:])
	if !ok || name != limitsExt {
		return false
	}
	id := binary.BigEndian.Uint32(body)
	reply := binary.BigEndian.AppendUint32(nil, 1+4+4*8)
	reply = append(reply, fxpExtendedReply)
	reply = binary.BigEndian.AppendUint32(reply, id)
	reply = binary.BigEndian.AppendUint64(reply, maxSFTPPacket)
	reply = binary.BigEndian.AppendUint64(reply, maxSFTPData) // read
	reply = binary.BigEndian.AppendUint64(reply, maxSFTPData) // write
	reply = binary.BigEndian.AppendUint64(reply, 0)           // open handles: no limit
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left > 0 {
		l.queued = append(l.queued, reply...)
		return true
	}
	// A failed write ends the session; the server sees it at its next.
	_, _ = l.w.Write(reply)
	return true
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s))) //nolint:gosec // short constants
	return append(b, s...)
}
