package transfer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// Mount maps a visible absolute path (e.g. "/workspace") to a host directory.
type Mount struct {
	Path, Dir string
	// File, if set, is Dir already opened by the caller (without following
	// symlinks the user controls): the child gets exactly it. The caller
	// keeps it and closes it after Spawn.
	File *os.File
}

// mountRoot is an open mount: every access below path goes through root.
type mountRoot struct {
	path string
	root *os.Root
}

// tree is the file system a client sees: the mounts, and read-only virtual
// directories above them ("/" lists only the mounts' first elements).
type tree struct {
	mounts []mountRoot
	start  string // where relative paths start: the first mount
}

// node is a visible path resolved against the tree.
type node struct {
	path string   // visible, absolute and clean
	root *os.Root // nil above the mounts
	rel  string   // name inside root; "." is the mount point itself
	vdir bool     // above the mounts: a virtual directory, or else a name
	// in one that cannot exist (writing there is refused, not "not found")
}

func openTree(mounts []Mount) (*tree, error) {
	if len(mounts) == 0 {
		return nil, errors.New("no mounts")
	}
	t := &tree{}
	for _, m := range mounts {
		p := m.Path
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			t.close()
			return nil, fmt.Errorf("mount %q: want a clean absolute path below /", p)
		}
		for _, o := range t.mounts {
			if within(p, o.path) || within(o.path, p) {
				t.close()
				return nil, fmt.Errorf("mount %s overlaps %s", p, o.path)
			}
		}
		r, err := os.OpenRoot(m.Dir)
		if err != nil {
			t.close()
			// The host directory stays out of the message: it reaches the user.
			return nil, fmt.Errorf("open %s: %w", p, errnoOf(err))
		}
		t.mounts = append(t.mounts, mountRoot{path: p, root: r})
	}
	t.start = t.mounts[0].path
	return t, nil
}

func (t *tree) close() {
	for _, m := range t.mounts {
		m.root.Close()
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// abs makes p absolute and clean: relative paths start at the start
// directory, and ".." stops at "/", so it can never name a host path.
func (t *tree) abs(p string) string {
	if !path.IsAbs(p) {
		p = path.Join(t.start, p)
	}
	return path.Clean(p)
}

// lookup resolves a visible path (relative ones start at the start
// directory). Only the mounts and the directories above them exist.
func (t *tree) lookup(p string) (node, error) {
	p = t.abs(p)
	for _, m := range t.mounts {
		if p == m.path {
			return node{path: p, root: m.root, rel: "."}, nil
		}
		if rest, ok := strings.CutPrefix(p, m.path+"/"); ok {
			return node{path: p, root: m.root, rel: rest}, nil
		}
	}
	if len(t.virtualChildren(p)) > 0 {
		return node{path: p, vdir: true}, nil
	}
	if p != "/" && len(t.virtualChildren(path.Dir(p))) > 0 {
		return node{path: p}, nil
	}
	return node{}, &fs.PathError{Op: "lstat", Path: p, Err: syscall.ENOENT}
}

// virtualChildren lists the names in the virtual directory p: the next
// path element of every mount below it.
func (t *tree) virtualChildren(p string) []string {
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	var names []string
	for _, m := range t.mounts {
		rest, ok := strings.CutPrefix(m.path, prefix)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, "/")
		dup := false
		for _, n := range names {
			dup = dup || n == name
		}
		if !dup {
			names = append(names, name)
		}
	}
	return names
}

func (n node) virtual() bool { return n.root == nil }

// missing is the error for a name above the mounts that is not a
// virtual directory.
func (n node) missing() error {
	if n.root == nil && !n.vdir {
		return &fs.PathError{Op: "lstat", Path: n.path, Err: syscall.ENOENT}
	}
	return nil
}

// writable refuses changes to the virtual directories and to the mount
// points themselves: renaming, removing or chmod-ing the workspace would
// break the project for the gateway, not just for this session.
func (n node) writable(op string) error {
	if n.root == nil || n.rel == "." {
		return &fs.PathError{Op: op, Path: n.path, Err: syscall.EACCES}
	}
	return nil
}

// child is the node for name inside directory n (n must be in a mount).
func (n node) child(name string) node {
	return node{path: path.Join(n.path, name), root: n.root, rel: path.Join(n.rel, name)}
}

// sameMount checks that a two-path operation (rename, link) stays in one
// os.Root: a rename across roots could not be confined.
func sameMount(op string, a, b node) error {
	if err := a.writable(op); err != nil {
		return err
	}
	if err := b.writable(op); err != nil {
		return err
	}
	if a.root != b.root {
		return &os.LinkError{Op: op, Old: a.path, New: b.path, Err: syscall.EXDEV}
	}
	return nil
}

// stat describes n, following symlinks inside its mount.
func (n node) stat() (fs.FileInfo, error) {
	if n.virtual() {
		return virtualDir(path.Base(n.path)), n.missing()
	}
	fi, err := n.root.Stat(n.rel)
	if err != nil {
		return nil, err
	}
	return named(fi, path.Base(n.path)), nil
}

// lstat describes n itself, a symlink included.
func (n node) lstat() (fs.FileInfo, error) {
	if n.virtual() {
		return virtualDir(path.Base(n.path)), n.missing()
	}
	fi, err := n.root.Lstat(n.rel)
	if err != nil {
		return nil, err
	}
	return named(fi, path.Base(n.path)), nil
}
