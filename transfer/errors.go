package transfer

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
)

// escapeErr is os.Root's unexported "path escapes from parent" error,
// captured once so that escapes can be reported as "permission denied"
// (the answer a jailed sftp-server gives) rather than a generic failure.
var escapeErr = sync.OnceValue(func() error {
	r, err := os.OpenRoot("/")
	if err != nil {
		return nil
	}
	defer r.Close()
	_, err = r.Lstat("..")
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
})

func isEscape(err error) bool {
	e := escapeErr()
	return e != nil && errors.Is(err, e)
}

// errnoOf reduces err to the errno (or os.Root error) it carries, dropping
// the paths that os functions put in messages: they may be host paths.
func errnoOf(err error) error {
	if isEscape(err) {
		return syscall.EACCES
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// strerror is err's reason as C's strerror spells it ("No such file or
// directory"), which is what scp users are used to reading.
func strerror(err error) string {
	s := errnoOf(err).Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// fxError carries an SFTP status code, which pkg/sftp finds with
// errors.As, and a message naming the visible path.
type fxError struct {
	msg  string
	code error
}

func (e *fxError) Error() string { return e.msg }
func (e *fxError) Unwrap() error { return e.code }

// toSFTP maps err the way OpenSSH's sftp-server does, so that `sftp`
// prints its usual "No such file or directory" / "Permission denied".
func toSFTP(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var fx *fxError
	if errors.As(err, &fx) {
		return err
	}
	return &fxError{msg: op + " " + p + ": " + errnoOf(err).Error(), code: sftpCode(err)}
}

func sftpCode(err error) error {
	switch {
	case isEscape(err), errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EFAULT):
		return sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.EBADF):
		return sftp.ErrSSHFxNoSuchFile
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL):
		return sftp.ErrSSHFxBadMessage
	case errors.Is(err, syscall.ENOSYS), errors.Is(err, errors.ErrUnsupported):
		return sftp.ErrSSHFxOpUnsupported
	}
	return sftp.ErrSSHFxFailure
}
