package transfer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"path"
	"strings"
)

// ServeSCP runs OpenSSH's legacy scp protocol (what `scp -O` execs
// remotely): args are the words after "scp", e.g. ["-t", "--", "dir"] or
// ["-r", "-f", "a"]. Relative paths, "~" and "~/x" start at the first
// mount. Errors about files are reported to the client in-band, as scp
// does; the int is the exit status (0 ok, 1 error), and the error is set
// only when the session itself failed (lost connection, no workspace).
func ServeSCP(ctx context.Context, mounts []Mount, args []string, in io.Reader, out io.Writer) (Stats, int, error) {
	s := &scpSession{scpConn: scpConn{ctx: ctx, in: bufio.NewReaderSize(in, 64<<10), out: out}}
	o, err := parseSCPArgs(args)
	if err != nil {
		_ = s.fatal("%v", err) // telling the client is all there is to do
		return Stats{}, 1, nil
	}
	s.o = o
	t, err := openTree(mounts)
	if err != nil {
		_ = s.fatal("%v", err) // telling the client is all there is to do
		return Stats{}, 1, err
	}
	defer t.close()
	s.t = t
	if o.sink {
		err = s.sink(s.targetAt(o.paths[0]), true)
	} else {
		err = s.source(o.paths)
	}
	status := 0
	if err != nil || s.errs > 0 {
		status = 1
	}
	if errors.Is(err, errFatal) {
		err = nil // told to the client already
	}
	return s.n.stats(), status, err
}

// scpSession is one scp -t or -f run.
type scpSession struct {
	scpConn
	o   scpOpts
	t   *tree
	n   counters
	buf []byte
}

// buffer is the one data buffer of the session: large enough that a big
// file moves in few writes, allocated once.
func (s *scpSession) buffer() []byte {
	if s.buf == nil {
		s.buf = make([]byte, 256<<10)
	}
	return s.buf
}

// scpPath makes an scp argument a visible path: "~" is the start
// directory, as the user's home would be for a real scp.
func (t *tree) scpPath(p string) string {
	if p == "~" {
		return t.start
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return path.Join(t.start, rest)
	}
	return t.abs(p)
}
