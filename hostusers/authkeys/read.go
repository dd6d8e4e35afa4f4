package authkeys

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MaxFileSize bounds an authorized_keys file: a few hundred keys. A
// larger one is refused rather than read, so a user cannot make the
// gateway read a huge file on every refresh.
const MaxFileSize = 256 << 10

// ErrUnsafe marks a file refused for its ownership, mode or a symlink;
// the message says which, for the admin's log.
var ErrUnsafe = errors.New("unsafe authorized_keys")

// Read returns the contents of home/.ssh/authorized_keys for the account
// uid. Like sshd with StrictModes, the file, ~/.ssh and the home directory
// must be owned by uid or root and not writable by group or others;
// beyond sshd, ~/.ssh and the file are opened without following a
// symlink (the gateway reads as root, so a symlink could point it at any
// file on the host), the file must be a regular file (a FIFO would hang
// the reader) and at most MaxFileSize bytes. Every check is made on the
// open descriptor, so the path cannot be swapped between check and read.
// The home directory itself is the account's (NSS) and may be a symlink
// the admin made.
func Read(home string, uid int) ([]byte, error) {
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("%w: home %q is not an absolute path", ErrUnsafe, home)
	}
	hfd, err := unix.Open(home, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", home, err)
	}
	defer unix.Close(hfd)
	if err := secure(hfd, home, uid, unix.S_IFDIR); err != nil {
		return nil, err
	}
	dir := filepath.Join(home, ".ssh")
	sfd, err := unix.Openat(hfd, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr(dir, err)
	}
	defer unix.Close(sfd)
	if err := secure(sfd, dir, uid, unix.S_IFDIR); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "authorized_keys")
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the type
	// check below refuses it.
	ffd, err := unix.Openat(sfd, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr(file, err)
	}
	f := os.NewFile(uintptr(ffd), file) //nolint:gosec // a descriptor we just opened
	defer f.Close()
	if err := secure(ffd, file, uid, unix.S_IFREG); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsafe, file, MaxFileSize)
	}
	return data, nil
}

func openErr(path string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %s is a symlink or not a directory", ErrUnsafe, path)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// secure is sshd's StrictModes test for one path component, on its
// descriptor: the right type, owned by uid or root, no group or world
// write permission.
func secure(fd int, path string, uid int, typ uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != typ {
		what := "a regular file"
		if typ == unix.S_IFDIR {
			what = "a directory"
		}
		return fmt.Errorf("%w: %s is not %s", ErrUnsafe, path, what)
	}
	if int(st.Uid) != uid && st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the user (%d) or root", ErrUnsafe, path, st.Uid, uid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o)", ErrUnsafe, path, st.Mode&0o7777)
	}
	return nil
}
