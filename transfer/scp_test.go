package transfer

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func fileMode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func TestSCPSinkFiles(t *testing.T) {
	f := newFixture(t)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	big := make([]byte, 3<<20+7)
	rand.Read(big)

	p := startSCP(t, f.mounts(), "-t", "--", ".")
	p.ack() // the sink is ready
	p.putFile(0o755, "run.sh", []byte("#!/bin/sh\n"), 0)
	p.putFile(0o666, "data", big, 0)
	p.putFile(0o600, "with space.txt", []byte("x"), 0)
	r := p.finish()
	if r.status != 0 || r.err != nil {
		t.Fatalf("status %d err %v", r.status, r.err)
	}
	if r.st.BytesIn != int64(len(big)+11) {
		t.Errorf("bytes in %d", r.st.BytesIn)
	}
	for name, want := range map[string]fs.FileMode{"run.sh": 0o755, "data": 0o644, "with space.txt": 0o600} {
		if m := fileMode(t, filepath.Join(f.ws, name)); m != want {
			t.Errorf("%s: mode %v, want %v", name, m, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(f.ws, "data")); !bytes.Equal(b, big) {
		t.Error("data differs")
	}

	// A target that is not a directory is the file's new name; an
	// existing longer file is truncated to the new size.
	os.WriteFile(filepath.Join(f.ws, "renamed"), []byte("old content, longer"), 0o644)
	p = startSCP(t, f.mounts(), "-t", "renamed")
	p.ack()
	p.putFile(0o644, "whatever", []byte("new"), 0)
	if r := p.finish(); r.status != 0 {
		t.Fatalf("status %d", r.status)
	}
	if b, _ := os.ReadFile(filepath.Join(f.ws, "renamed")); string(b) != "new" {
		t.Errorf("renamed = %q", b)
	}
	// ~ and ~/ are the workspace.
	os.Mkdir(filepath.Join(f.ws, "sub"), 0o755)
	p = startSCP(t, f.mounts(), "-t", "~/sub")
	p.ack()
	p.putFile(0o644, "t", []byte("tilde"), 0)
	p.finish()
	if b, _ := os.ReadFile(filepath.Join(f.ws, "sub", "t")); string(b) != "tilde" {
		t.Errorf("~/sub/t = %q", b)
	}
}

func TestSCPSinkRecursivePreserve(t *testing.T) {
	f := newFixture(t)
	os.Mkdir(filepath.Join(f.ws, "x y"), 0o755)
	const mt = 1_500_000_000
	p := startSCP(t, f.mounts(), "-r", "-p", "-t", "-d", "--", "x y/")
	p.ack()
	p.send("T1400000000 0 1400000000 0\n")
	p.ack()
	p.send("D0750 0 dir one\n")
	p.ack()
	p.putFile(0o640, "a b.txt", []byte("hello"), mt)
	p.send("D0700 0 inner\n")
	p.ack()
	p.putFile(0o755, "tool", []byte("#!"), 0)
	p.send("E\n")
	p.ack()
	p.send("E\n")
	p.ack()
	r := p.finish()
	if r.status != 0 || r.err != nil {
		t.Fatalf("status %d err %v", r.status, r.err)
	}
	root := filepath.Join(f.ws, "x y", "dir one")
	checks := map[string]fs.FileMode{
		"":           fs.ModeDir | 0o750,
		"a b.txt":    0o640,
		"inner":      fs.ModeDir | 0o700,
		"inner/tool": 0o755,
	}
	for name, want := range checks {
		if m := fileMode(t, filepath.Join(root, name)); m != want {
			t.Errorf("%q: mode %v, want %v", name, m, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(root, "a b.txt")); fi.ModTime().Unix() != mt {
		t.Errorf("a b.txt mtime %v", fi.ModTime())
	}
	if fi, _ := os.Stat(root); fi.ModTime().Unix() != 1_400_000_000 {
		t.Errorf("dir one mtime %v (set after its content)", fi.ModTime())
	}
}

func TestSCPSinkRefusals(t *testing.T) {
	f := newFixture(t)
	plantLinks(t, f)
	before := snap(t, f)
	for _, tc := range []struct {
		name string
		args []string
		rec  string
	}{
		{"dotdot file", []string{"-t", "."}, "C0644 1 ../x\n"},
		{"slash file", []string{"-t", "."}, "C0644 1 a/b\n"},
		{"abs file", []string{"-t", "."}, "C0644 1 /tmp/x\n"},
		{"dot file", []string{"-t", "."}, "C0644 1 .\n"},
		{"empty name", []string{"-t", "."}, "C0644 1 \n"},
		{"dotdot dir", []string{"-r", "-t", "."}, "D0755 0 ..\n"},
		{"slash dir", []string{"-r", "-t", "."}, "D0755 0 a/b\n"},
		{"dir without -r", []string{"-t", "."}, "D0755 0 d\n"},
		{"bad mode", []string{"-t", "."}, "C06x4 1 f\n"},
		{"negative size", []string{"-t", "."}, "C0644 -1 f\n"},
		{"garbage", []string{"-t", "."}, "hello\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startSCP(t, f.mounts(), tc.args...)
			p.ack()
			p.send(tc.rec)
			if s := p.status(); !strings.HasPrefix(s, "\x02scp: ") {
				t.Errorf("got %q, want a fatal error", s)
			}
			if r := p.finish(); r.status != 1 {
				t.Errorf("status %d", r.status)
			}
		})
	}
	for _, name := range []string{"x", "a", "d", "f"} {
		if _, err := os.Lstat(filepath.Join(f.ws, name)); err == nil {
			t.Errorf("%s was created", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(f.base, "x")); err == nil {
		t.Error("../x was created")
	}
	before.diff(t, snap(t, f))
}

func TestSCPSinkEscapes(t *testing.T) {
	f := newFixture(t)
	plantLinks(t, f)
	before := snap(t, f)
	for _, target := range []string{"tosib", "up", "deeplink", "filelink", "rellink", "toroot/tmp", "/etc", "../outside", "/", "/workspace/../outside"} {
		t.Run(target, func(t *testing.T) {
			p := startSCP(t, f.mounts(), "-t", "--", target)
			p.ack()
			p.send("C0644 5 secret.txt\n")
			if s := p.status(); !strings.HasPrefix(s, "\x01scp: ") {
				t.Fatalf("got %q, want an error", s)
			}
			// The file was refused: the client goes on with the next.
			p.send("D0755 0 d\n")
			if s := p.status(); !strings.HasPrefix(s, "\x02scp: ") {
				t.Errorf("directory without -r: %q", s)
			}
			if r := p.finish(); r.status != 1 {
				t.Errorf("status %d", r.status)
			}
		})
	}
	// With -d, a target outside is "not a directory", before anything.
	p := startSCP(t, f.mounts(), "-d", "-t", "tosib")
	if s := p.status(); !strings.HasPrefix(s, "\x02scp: tosib: Not a directory") {
		t.Errorf("-d tosib: %q", s)
	}
	p.finish()
	before.diff(t, snap(t, f))
}

func TestSCPSource(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.ws, "dir one")
	os.MkdirAll(filepath.Join(dir, "inner"), 0o750)
	os.WriteFile(filepath.Join(dir, "a b.txt"), []byte("hello"), 0o640)
	os.WriteFile(filepath.Join(dir, "inner", "tool"), []byte("#!"), 0o755)
	big := make([]byte, 2<<20+3)
	rand.Read(big)
	os.WriteFile(filepath.Join(f.ws, "big"), big, 0o644)
	mt := time.Unix(1_500_000_000, 0)
	os.Chtimes(filepath.Join(dir, "a b.txt"), mt, mt)
	os.Chtimes(dir, mt, mt)

	p := startSCP(t, f.mounts(), "-r", "-p", "-f", "--", "dir one/", "~/big", "missing")
	tree, errs := p.receive()
	r := p.finish()
	if r.status != 1 || len(errs) != 1 || errs[0] != "scp: missing: No such file or directory" {
		t.Errorf("status %d errors %q, want one for missing", r.status, errs)
	}
	want := map[string]got{
		"dir one":            {kind: 'D', mode: 0o750, mtime: mt.Unix()},
		"dir one/a b.txt":    {kind: 'C', mode: 0o640, data: "hello", mtime: mt.Unix()},
		"dir one/inner":      {kind: 'D', mode: 0o750},
		"dir one/inner/tool": {kind: 'C', mode: 0o755, data: "#!"},
		"big":                {kind: 'C', mode: 0o644, data: string(big)},
	}
	for name, w := range want {
		g, ok := tree[name]
		if !ok {
			t.Errorf("%s not sent", name)
			continue
		}
		if g.kind != w.kind || g.mode != w.mode || g.data != w.data || (w.mtime != 0 && g.mtime != w.mtime) {
			t.Errorf("%s: got %c %o %d bytes mtime %d", name, g.kind, g.mode, len(g.data), g.mtime)
		}
	}
	if len(tree) != len(want) {
		t.Errorf("sent %d entries, want %d", len(tree), len(want))
	}
	if r.st.BytesOut != int64(len(big)+7) {
		t.Errorf("bytes out %d", r.st.BytesOut)
	}

	// Without -r a directory is refused, the file after it still sent.
	p = startSCP(t, f.mounts(), "-f", "dir one", "/workspace/big")
	tree, errs = p.receive()
	p.finish()
	if len(errs) != 1 || !strings.Contains(errs[0], "not a regular file") || tree["big"].data != string(big) {
		t.Errorf("errors %q, sent %d", errs, len(tree))
	}
}

func TestSCPSourceEscapes(t *testing.T) {
	f := newFixture(t)
	plantLinks(t, f)
	for _, args := range [][]string{
		{"-f", "filelink"}, {"-f", "rellink"}, {"-f", "/etc/passwd"},
		{"-f", "../outside/secret.txt"}, {"-f", "toetc/passwd"}, {"-f", "up/secret.txt"},
		{"-r", "-f", "tosib"}, {"-r", "-f", "toroot"}, {"-r", "-f", "deeplink"},
		{"-r", "-f", "/"}, {"-r", "-f", ".."}, {"-f", "~/../outside/secret.txt"},
	} {
		p := startSCP(t, f.mounts(), args...)
		tree, errs := p.receive()
		r := p.finish()
		if len(tree) != 0 || len(errs) == 0 || r.status != 1 {
			t.Errorf("%q: sent %v, errors %q, status %d", args, tree, errs, r.status)
		}
	}
	// A recursive copy of the workspace sends the links' own content only
	// where it stays inside: every escape is an error, never data.
	p := startSCP(t, f.mounts(), "-r", "-f", "/workspace")
	tree, _ := p.receive()
	p.finish()
	for name, g := range tree {
		if strings.Contains(g.data, "secret") || strings.HasPrefix(name, "workspace/toroot/") {
			t.Errorf("sent %s", name)
		}
	}
	if tree["workspace/mine"].data != "mine" {
		t.Errorf("workspace/mine not sent: %v", tree)
	}
}

func TestSCPArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-t", "--", "dir"}, true},
		{[]string{"-r", "-t", "-d", "--", "x y/"}, true},
		{[]string{"-pf", "a", "b"}, true},
		{[]string{"-v", "-f", "--", "-t"}, true},
		{[]string{"-t"}, false},
		{[]string{"-t", "a", "b"}, false},
		{[]string{"-t", "-f", "a"}, false},
		{[]string{"a"}, false},
		{[]string{"-x", "-t", "a"}, false},
	} {
		_, err := parseSCPArgs(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.args, err)
		}
	}
	// Bad arguments are told to the client in-band.
	p := startSCP(t, newFixture(t).mounts(), "-t", "a", "b")
	if s := p.status(); !strings.HasPrefix(s, "\x02scp: ambiguous target") {
		t.Errorf("got %q", s)
	}
	if r := p.finish(); r.status != 1 {
		t.Errorf("status %d", r.status)
	}
}
