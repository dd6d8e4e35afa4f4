package workspace

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
)

// Usage is what a workspace holds on disk.
type Usage struct {
	Bytes int64 // allocated blocks, a hard-linked file counted once
	Files int64
	// Partial is set when the walk stopped early (ctx ended) or a part
	// could not be read: Bytes is then a lower bound.
	Partial bool
}

// Usage walks the workspace and adds up what it holds, with the gateway's
// own rights (a directory the user made unreadable still counts). It
// follows no symlink: the walk lists entries without following them, and
// goes through the workspace's os.Root, which refuses any path that
// leaves it, even one swapped for a symlink meanwhile. It stops when ctx
// ends, and reports what it counted so far.
func (d *Dir) Usage(ctx context.Context) Usage {
	var u Usage
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err := fs.WalkDir(d.root.FS(), ".", func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			u.Partial = true
			return nil // an unreadable part: count the rest
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		info, err := e.Info()
		if err != nil {
			u.Partial = true
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			u.Bytes += info.Size()
			return nil
		}
		if st.Nlink > 1 && !info.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Bytes += st.Blocks * 512
		if info.Mode().IsRegular() {
			u.Files++
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.SkipAll) {
		u.Partial = true
	}
	return u
}
