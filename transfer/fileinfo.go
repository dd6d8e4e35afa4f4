package transfer

import (
	"io/fs"
	"syscall"
	"time"
)

// namedInfo renames a FileInfo: os.Root reports the mount point as ".",
// clients expect its visible name. Sys() still returns the *syscall.Stat_t
// that pkg/sftp needs for the owner's uid and gid.
type namedInfo struct {
	fs.FileInfo
	name string
}

func (i namedInfo) Name() string { return i.name }

func named(fi fs.FileInfo, name string) fs.FileInfo {
	if fi.Name() == name {
		return fi
	}
	return namedInfo{FileInfo: fi, name: name}
}

// virtualInfo describes a directory above the mounts: owned by root and
// read-only, which is also what the handlers enforce.
type virtualInfo struct{ name string }

func virtualDir(name string) fs.FileInfo { return virtualInfo{name: name} }

func (v virtualInfo) Name() string       { return v.name }
func (v virtualInfo) Size() int64        { return 0 }
func (v virtualInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o555 }
func (v virtualInfo) ModTime() time.Time { return started }
func (v virtualInfo) IsDir() bool        { return true }
func (v virtualInfo) Sys() any {
	return &syscall.Stat_t{Mode: syscall.S_IFDIR | 0o555, Nlink: 2}
}

// started gives the virtual directories a stable time.
var started = time.Now().Truncate(time.Second)
