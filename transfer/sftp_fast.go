package transfer

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strconv"
	"syscall"

	"github.com/pkg/sftp"
)

// fastFiles serves OPEN and the requests on the files it opened (READ,
// WRITE, CLOSE, FSTAT, FSETSTAT) in the child's read loop, and leaves
// directories, paths and everything else to pkg/sftp's request server.
// That server passes each request across four goroutines (reader,
// dispatcher, worker, ordered sender): a 1 GiB get cost the child about
// twice the CPU of OpenSSH's sftp-server, and every small file paid a
// round of wake-ups per request. Here a READ is one pread into a buffer
// that already holds room for the reply's header, and one write of the
// whole reply, in the goroutine that read the request.
//
// Requests stay in order: limitsRWC.acquire waits until pkg/sftp has
// answered everything passed to it before. Replies may overtake none of
// those, and SFTP lets a client match replies by id anyway.
type fastFiles struct {
	h     *sftpHandlers
	out   *limitsRWC
	files map[string]*file
	next  uint64
	reply []byte // the reply being built; a read's data goes straight into it
}

const (
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpFstat    = 8
	fxpFsetstat = 10
	fxpReaddir  = 12
	fxpStatus   = 101
	fxpHandle   = 102
	fxpData     = 103
	fxpAttrs    = 105

	fxOK         = 0
	fxEOF        = 1
	fxNoSuchFile = 2
	fxPermission = 3
	fxFailure    = 4
	fxBadMessage = 5
	fxOpUnsupp   = 8

	attrACModTime = 0x8

	// handlePrefix starts every handle of fastFiles; pkg/sftp's handles
	// are decimal numbers, so a request's handle says who serves it.
	handlePrefix = 'f'
	// dataHeader is a DATA reply's length, type, id and data length.
	dataHeader = 4 + 1 + 4 + 4
)

func newFastFiles(h *sftpHandlers, out *limitsRWC) *fastFiles {
	return &fastFiles{h: h, out: out, files: map[string]*file{}}
}

// takes says whether requests of type typ may be fastFiles': the read
// loop reads those whole and offers them to serve.
func (ff *fastFiles) takes(typ byte) bool {
	switch typ {
	case fxpOpen, fxpClose, fxpRead, fxpWrite, fxpFstat, fxpFsetstat, fxpReaddir:
		return true
	}
	return false
}

// serve answers the request typ with body b if it is fastFiles': an
// OPEN, or a request on one of its handles. It returns false for one to
// pass to pkg/sftp (a request on a directory's handle, or one too short
// to carry an id, which pkg/sftp refuses as it always did), and an error
// only when the reply could not be written: the session is over then.
func (ff *fastFiles) serve(typ byte, b []byte) (bool, error) {
	if len(b) < 4 {
		return false, nil
	}
	id := binary.BigEndian.Uint32(b)
	rest := b[4:]
	var f *file
	var handle []byte
	if typ != fxpOpen {
		var ok bool
		handle, rest, ok = bytesStr(rest)
		if !ok || len(handle) == 0 || handle[0] != handlePrefix {
			return false, nil
		}
		f = ff.files[string(handle)]
	}
	w, err := ff.out.acquire()
	if err != nil {
		return true, err
	}
	defer ff.out.release()
	ff.reply = ff.reply[:0]
	switch {
	case typ == fxpOpen:
		ff.open(id, rest)
	case f == nil:
		// What pkg/sftp answers for a handle it does not know (EBADF).
		ff.status(id, fxFailure, "bad file descriptor")
	case typ == fxpRead:
		ff.read(id, f, rest)
	case typ == fxpWrite:
		ff.write(id, f, rest)
	case typ == fxpClose:
		delete(ff.files, string(handle))
		ff.result(id, toSFTP("close", f.path, f.Close()))
	case typ == fxpFstat:
		ff.fstat(id, f)
	case typ == fxpFsetstat:
		ff.fsetstat(id, f, rest)
	default: // READDIR
		ff.status(id, fxFailure, "unexpected dir packet")
	}
	_, err = w.Write(ff.reply)
	return true, err
}

func (ff *fastFiles) open(id uint32, b []byte) {
	p, b, ok := str(b)
	if !ok || len(b) < 4 {
		ff.status(id, fxBadMessage, "bad OPEN packet")
		return
	}
	pf := decodeOpenFlags(binary.BigEndian.Uint32(b))
	perm, hasMode := permsOf(b[4:])
	p = ff.h.t.abs(p)
	f, err := ff.h.open(p, pf, perm, hasMode)
	if err != nil {
		ff.result(id, toSFTP("open", p, err))
		return
	}
	ff.next++
	h := strconv.AppendUint([]byte{handlePrefix}, ff.next, 10)
	ff.files[string(h)] = f
	ff.reply = binary.BigEndian.AppendUint32(ff.reply, uint32(1+4+4+len(h))) //nolint:gosec // a short handle
	ff.reply = append(ff.reply, fxpHandle)
	ff.reply = binary.BigEndian.AppendUint32(ff.reply, id)
	ff.reply = binary.BigEndian.AppendUint32(ff.reply, uint32(len(h))) //nolint:gosec // a short handle
	ff.reply = append(ff.reply, h...)
}

// read answers with up to maxSFTPData bytes, the limit the limits reply
// promises (pkg/sftp capped a read there too); a short read at the end
// of the file returns what there is, the next one EOF.
func (ff *fastFiles) read(id uint32, f *file, b []byte) {
	if len(b) < 12 {
		ff.status(id, fxBadMessage, "bad READ packet")
		return
	}
	if !f.readable {
		ff.status(id, fxFailure, "unexpected read packet")
		return
	}
	off := binary.BigEndian.Uint64(b)
	n := int(min(binary.BigEndian.Uint32(b[8:]), maxSFTPData))
	if off > math.MaxInt64 {
		ff.result(id, toSFTP("read", f.path, syscall.EINVAL))
		return
	}
	if cap(ff.reply) < dataHeader+maxSFTPData {
		// One buffer for the whole session: replies go one at a time.
		ff.reply = make([]byte, 0, dataHeader+maxSFTPData)
	}
	buf := ff.reply[:dataHeader+n]
	k, err := f.ReadAt(buf[dataHeader:], int64(off))
	if err != nil && (!errors.Is(err, io.EOF) || k == 0) {
		if errors.Is(err, io.EOF) {
			ff.status(id, fxEOF, "EOF")
			return
		}
		ff.result(id, toSFTP("read", f.path, err))
		return
	}
	binary.BigEndian.PutUint32(buf, uint32(dataHeader-4+k)) //nolint:gosec // at most maxSFTPData
	buf[4] = fxpData
	binary.BigEndian.PutUint32(buf[5:], id)
	binary.BigEndian.PutUint32(buf[9:], uint32(k)) //nolint:gosec // at most maxSFTPData
	ff.reply = buf[:dataHeader+k]
}

func (ff *fastFiles) write(id uint32, f *file, b []byte) {
	if len(b) < 8 {
		ff.status(id, fxBadMessage, "bad WRITE packet")
		return
	}
	off := binary.BigEndian.Uint64(b)
	data, _, ok := bytesStr(b[8:])
	switch {
	case !ok:
		ff.status(id, fxBadMessage, "bad WRITE packet")
	case !f.writable:
		ff.status(id, fxFailure, "unexpected write packet")
	case off > math.MaxInt64:
		ff.result(id, toSFTP("write", f.path, syscall.EINVAL))
	default:
		_, err := f.WriteAt(data, int64(off))
		ff.result(id, toSFTP("write", f.path, err))
	}
}

// fstat describes the open file itself, as sftp-server's fstat(2) does,
// in the attributes pkg/sftp sends for a regular file: size, owner,
// mode, and the modification time as both times.
func (ff *fastFiles) fstat(id uint32, f *file) {
	fi, err := f.f.Stat()
	if err != nil {
		ff.result(id, toSFTP("fstat", f.path, err))
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		ff.status(id, fxFailure, "fstat: no status")
		return
	}
	mtime := uint32(st.Mtim.Sec) //nolint:gosec // SFTPv3 times are 32 bits, as in pkg/sftp
	r := binary.BigEndian.AppendUint32(ff.reply, 1+4+4+8+4*5)
	r = append(r, fxpAttrs)
	r = binary.BigEndian.AppendUint32(r, id)
	r = binary.BigEndian.AppendUint32(r, attrSize|attrUIDGID|attrPerms|attrACModTime)
	r = binary.BigEndian.AppendUint64(r, uint64(st.Size)) //nolint:gosec // a size is never negative
	r = binary.BigEndian.AppendUint32(r, st.Uid)
	r = binary.BigEndian.AppendUint32(r, st.Gid)
	r = binary.BigEndian.AppendUint32(r, st.Mode)
	r = binary.BigEndian.AppendUint32(r, mtime)
	ff.reply = binary.BigEndian.AppendUint32(r, mtime)
}

// fsetstat sets the attributes on the path the file was opened as, as
// pkg/sftp's request server did (setstat checks that path's mount).
func (ff *fastFiles) fsetstat(id uint32, f *file, b []byte) {
	flags, a, ok := parseAttrs(b)
	if !ok {
		ff.status(id, fxBadMessage, "bad FSETSTAT packet")
		return
	}
	ff.result(id, toSFTP("setstat", f.path, ff.h.setstat(f.path, flags, a)))
}

// parseAttrs reads SFTPv3 attributes; extended pairs are skipped.
func parseAttrs(b []byte) (sftp.FileAttrFlags, *sftp.FileStat, bool) {
	var fl sftp.FileAttrFlags
	var a sftp.FileStat
	u32 := func() (uint32, bool) {
		if len(b) < 4 {
			return 0, false
		}
		v := binary.BigEndian.Uint32(b)
		b = b[4:]
		return v, true
	}
	flags, ok := u32()
	if !ok {
		return fl, nil, false
	}
	if flags&attrSize != 0 {
		if len(b) < 8 {
			return fl, nil, false
		}
		fl.Size, a.Size, b = true, binary.BigEndian.Uint64(b), b[8:]
	}
	ok = true
	if flags&attrUIDGID != 0 {
		fl.UidGid = true
		a.UID, ok = u32()
		if ok {
			a.GID, ok = u32()
		}
	}
	if ok && flags&attrPerms != 0 {
		fl.Permissions = true
		a.Mode, ok = u32()
	}
	if ok && flags&attrACModTime != 0 {
		fl.Acmodtime = true
		a.Atime, ok = u32()
		if ok {
			a.Mtime, ok = u32()
		}
	}
	return fl, &a, ok
}

// result answers with err's status, or OK for nil.
func (ff *fastFiles) result(id uint32, err error) {
	if err == nil {
		ff.status(id, fxOK, "")
		return
	}
	ff.status(id, statusCode(err), err.Error())
}

// statusCode is the SFTP status pkg/sftp sends for err (from toSFTP).
func statusCode(err error) uint32 {
	var fx *fxError
	if !errors.As(err, &fx) {
		return fxFailure
	}
	switch fx.code {
	case sftp.ErrSSHFxNoSuchFile:
		return fxNoSuchFile
	case sftp.ErrSSHFxPermissionDenied:
		return fxPermission
	case sftp.ErrSSHFxBadMessage:
		return fxBadMessage
	case sftp.ErrSSHFxOpUnsupported:
		return fxOpUnsupp
	}
	return fxFailure
}

func (ff *fastFiles) status(id, code uint32, msg string) {
	r := binary.BigEndian.AppendUint32(ff.reply, uint32(1+4+4+4+len(msg)+4)) //nolint:gosec // a short message
	r = append(r, fxpStatus)
	r = binary.BigEndian.AppendUint32(r, id)
	r = binary.BigEndian.AppendUint32(r, code)
	r = appendString(r, msg)
	ff.reply = appendString(r, "") // language tag, empty as pkg/sftp's
}

// closeAll closes the files the client left open, and says whether there
// were any.
func (ff *fastFiles) closeAll() bool {
	left := len(ff.files) > 0
	for h, f := range ff.files {
		f.Close()
		delete(ff.files, h)
	}
	return left
}

// bytesStr is str without the copy into a string.
func bytesStr(b []byte) ([]byte, []byte, bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if int64(n) > int64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}
