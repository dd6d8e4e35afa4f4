package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	shlex "github.com/anmitsu/go-shlex"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
	"github.com/ds01/ds01-gateway/transfer"
)

// File transfers never touch the project container: SFTP and legacy scp
// are served by a child of the gateway running as the user on the
// workspace (package transfer); rsync's server runs in a short-lived
// transfer container. So copying a dataset works while the GPUs are busy,
// and never holds one.

// transferKind recognises the commands file-transfer clients exec: legacy
// scp (`scp -t`/`scp -f`, what `scp -O` runs) and rsync's server side. The
// command is split as a POSIX shell would split words (the client quotes
// paths with spaces that way); nothing of it ever reaches a shell. An
// rsync server command is parsed later, strictly (rsync_args.go).
func transferKind(command string) (kind string, args []string) {
	if isRsyncServer(command) {
		return "rsync", nil
	}
	words, err := shlex.Split(command, true)
	if err != nil || len(words) < 2 {
		return "", nil
	}
	switch path.Base(words[0]) {
	case "scp":
		for _, w := range words[1:] {
			if w == "--" || !strings.HasPrefix(w, "-") {
				break
			}
			if strings.ContainsAny(w[1:], "tf") {
				return "scp", words[1:]
			}
		}
	}
	return "", nil
}

// serveFiles runs an SFTP or legacy scp session as the user on the
// project's workspace, creating the workspace (not the image) if the
// project is new.
func (sc *sessionChan) serveFiles(ctx context.Context, log *slog.Logger, u store.User, project, mode string, args []string) {
	fm, err := sc.s.sessions.FileMounts(ctx, u, project)
	if err != nil {
		log.Error("transfer mounts", "err", err)
		sc.fail(userMessage(err), 1)
		return
	}
	mounts := make([]transfer.Mount, len(fm))
	for i, m := range fm {
		defer m.Dir.Close()
		mounts[i] = transfer.Mount{Path: m.Path, Dir: m.Dir.Path(), File: m.Dir.File()}
	}
	start := time.Now()
	code, st, err := transfer.Spawn(ctx, transfer.Spec{
		Self:   sc.s.opts.Self,
		Mode:   mode,
		Mounts: mounts,
		UID:    u.UID,
		GID:    u.GID,
		Args:   args,
	}, sc.ch, sc.ch, sc.ch.Stderr())
	sc.s.sessions.RecordTransfer(ctx, u, project, mode, session.TransferStats{BytesIn: st.BytesIn, BytesOut: st.BytesOut}, time.Since(start))
	sc.s.observeTransfer(st.BytesIn, st.BytesOut)
	if err != nil {
		if ctx.Err() != nil {
			// The client closed the channel without waiting for the exit
			// status (Paramiko's SFTP close does): an ordinary end.
			log.Info("transfer ended by the client", "mode", mode, "bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "duration", time.Since(start))
			return
		}
		log.Error("transfer", "mode", mode, "err", err)
		sc.fail("file transfer failed", 1)
		return
	}
	log.Info("transfer", "mode", mode, "bytes_in", st.BytesIn, "bytes_out", st.BytesOut, "duration", time.Since(start))
	sc.exit(runtime.ExitStatus{Code: code})
}

// serveRsync runs rsync's server side in a transfer container, if the
// command is one; anything else is refused before a container exists.
func (sc *sessionChan) serveRsync(ctx context.Context, log *slog.Logger, u store.User, project, command string) {
	cmd, err := parseRsyncServer(command)
	if err != nil {
		log.Info("rsync refused", "err", err, "command", clip(command, 200))
		// rsync's own exit status for a syntax or usage error.
		sc.fail("rsync: "+err.Error(), 1)
		return
	}
	start := time.Now()
	in := &countingReader{r: sc.ch}
	out := &countingWriter{w: sc.ch}
	status, err := sc.s.sessions.RunTransfer(ctx, u, project, cmd, in, out, sc.ch.Stderr())
	bytesIn, bytesOut := in.n.Load(), out.n.Load()
	sc.s.sessions.RecordTransfer(ctx, u, project, "rsync", session.TransferStats{BytesIn: bytesIn, BytesOut: bytesOut}, time.Since(start))
	sc.s.observeTransfer(bytesIn, bytesOut)
	if errors.Is(err, session.ErrLimit) {
		log.Info("rsync", "err", err)
		sc.fail(userMessage(err), 1)
		return
	}
	if err != nil {
		log.Error("rsync", "err", err)
		if ctx.Err() == nil {
			sc.fail(userMessage(err), 1)
		}
		return
	}
	sc.exit(status)
}

// observeTransfer tells the observer what a transfer moved.
func (s *Server) observeTransfer(in, out int64) {
	if in > 0 {
		s.obs.TransferBytes(TransferIn, in)
	}
	if out > 0 {
		s.obs.TransferBytes(TransferOut, out)
	}
}

// clip shortens s for a log line: a refused command may be long.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// countingReader and countingWriter measure rsync's traffic: the protocol
// bytes, close to the payload it moved. Atomic: the copy of the client's
// input may still be blocked in a read when the transfer has ended (a
// timeout), and the count is taken then.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
