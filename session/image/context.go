package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/ds01/ds01-gateway/session/workspace"
)

// DockerfileName is where a project's Dockerfile lives in its workspace.
const DockerfileName = "Dockerfile"

// ContextFor writes a build context to w: the Dockerfile df and only the
// files its COPY/ADD instructions name, read from the workspace root. df is
// given rather than read: a change is built before it replaces the
// workspace's Dockerfile. Workspaces hold datasets, so sending the whole
// directory to the engine is never acceptable. Files are read through
// root, so no symlink or ".." can pull in anything outside the workspace,
// and only regular files are read: the workspace is the user's, and a FIFO
// there must not hold a gateway thread.
func ContextFor(root *os.Root, df []byte, w io.Writer) error {
	tw := tar.NewWriter(w)
	if err := addBytes(tw, DockerfileName, df); err != nil {
		return err
	}
	seen := map[string]bool{DockerfileName: true}
	rfs := root.FS()
	for _, src := range Sources(df) {
		matches, err := fs.Glob(rfs, src)
		if err != nil {
			return fmt.Errorf("Dockerfile source %q: %w", src, err)
		}
		for _, m := range matches {
			err := fs.WalkDir(rfs, m, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() || seen[p] {
					return nil
				}
				seen[p] = true
				return addFile(tw, root, p)
			})
			if err != nil {
				return fmt.Errorf("Dockerfile source %q: %w", src, err)
			}
		}
	}
	return tw.Close()
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

// addFile adds name if it is a regular file (see workspace.OpenRegular:
// FIFOs, sockets and devices are nothing a build can use, and must not
// hold a gateway thread).
func addFile(tw *tar.Writer, root *os.Root, name string) error {
	f, st, err := workspace.OpenRegular(root, name)
	if errors.Is(err, workspace.ErrNotRegular) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := &tar.Header{Name: name, Mode: int64(st.Mode().Perm()), Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	// The size is in the header: a file growing meanwhile is cut there, one
	// shrinking fails the build rather than the tar stream.
	if _, err := io.CopyN(tw, f, st.Size()); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	return nil
}

// Sources lists the local source paths of the Dockerfile's COPY and ADD
// instructions, cleaned and relative, quotes and escapes removed as the
// builder removes them. URLs, other stages (--from), sources with
// variables and paths that climb out of the context are left out: the
// engine refuses them or Check does, and they must never make us read
// outside the workspace.
func Sources(dockerfile []byte) []string {
	var out []string
	for _, r := range Readings(dockerfile) {
		for _, in := range r.Insts {
			if in.Keyword != "COPY" && in.Keyword != "ADD" || len(in.Args) < 2 {
				continue
			}
			if _, ok := in.Flag("from"); ok {
				continue
			}
			for _, src := range in.Args[:len(in.Args)-1] {
				s, err := shellWord(src, r.Escape, nil)
				if err != nil || isRemote(s) {
					continue
				}
				p := path.Clean(strings.TrimLeft(s, "/"))
				if p == ".." || strings.HasPrefix(p, "../") || slices.Contains(out, p) {
					continue
				}
				out = append(out, p)
			}
		}
	}
	return out
}
