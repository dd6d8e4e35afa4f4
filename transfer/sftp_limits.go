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
// another packet (pkg/sftp writes one as a header, then its data).
type limitsRWC struct {
	io.Reader
	w io.WriteCloser

	mu      sync.Mutex
	version bool   // the VERSION reply has gone
	left    int    // bytes of the packet being written still to come
	queued  []byte // answers waiting for that packet's end
}

func (l *limitsRWC) Close() error { return l.w.Close() }

func (l *limitsRWC) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.left == 0 && len(p) >= 5 {
		l.left = 4 + int(binary.BigEndian.Uint32(p[:4]))
		if !l.version && p[4] == fxpVersion && l.left == len(p) {
			l.version = true
			n := len(p)
			q := appendString(appendString(append([]byte(nil), p...), limitsExt), "1")
			binary.BigEndian.PutUint32(q, uint32(len(q)-4)) //nolint:gosec // a few hundred bytes
			l.left = 0
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
