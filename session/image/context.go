package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// DockerfileName is where a project's Dockerfile lives in its workspace.
const DockerfileName = "Dockerfile"

// ContextFor writes a build context for the workspace root to w: the
// Dockerfile df and only the files its COPY/ADD instructions name. df is
// given rather than read: a change is built before it replaces the
// workspace's Dockerfile. Workspaces hold datasets, so sending the whole
// directory to the engine is never acceptable. Files are read through the
// os.Root, so no symlink or ".." can pull in anything outside the workspace.
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
				return addFile(tw, rfs, p)
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

func addFile(tw *tar.Writer, fsys fs.FS, name string) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return nil // sockets, devices: nothing a build can use
	}
	hdr := &tar.Header{Name: name, Mode: int64(st.Mode().Perm()), Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("tar %s: %w", name, err)
	}
	return nil
}

// Sources lists the local source paths of the Dockerfile's COPY and ADD
// instructions, cleaned and relative. URLs, other stages (--from) and paths
// that climb out of the context are left out: the engine would refuse them
// anyway, and they must never make us read outside the workspace.
func Sources(dockerfile []byte) []string {
	var out []string
	for _, line := range logicalLines(dockerfile) {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		inst := strings.ToUpper(fields[0])
		if inst != "COPY" && inst != "ADD" {
			continue
		}
		args, fromStage := instructionArgs(strings.TrimSpace(line[len(fields[0]):]))
		if fromStage || len(args) < 2 {
			continue
		}
		for _, src := range args[:len(args)-1] {
			if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
				continue
			}
			p := path.Clean(strings.TrimPrefix(src, "/"))
			if p == ".." || strings.HasPrefix(p, "../") {
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// instructionArgs splits COPY/ADD arguments in shell or JSON form, dropping
// --flags and noting --from.
func instructionArgs(rest string) (args []string, fromStage bool) {
	for strings.HasPrefix(rest, "--") {
		flag, tail, _ := strings.Cut(rest, " ")
		if strings.HasPrefix(flag, "--from") {
			fromStage = true
		}
		rest = strings.TrimSpace(tail)
	}
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &args); err == nil {
			return args, fromStage
		}
	}
	return strings.Fields(rest), fromStage
}

// logicalLines joins backslash continuations and drops comments.
func logicalLines(df []byte) []string {
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(df))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
