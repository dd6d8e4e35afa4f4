package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clientOpts are the OpenSSH options shared by ssh, sftp, scp and rsync's
// ssh: the host's config and known_hosts kept out, key auth only.
func (g *gw) clientOpts(key string) []string {
	return []string{
		"-F", "/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
		"-i", key,
	}
}

// sftpArgs are sftp's arguments up to and including the destination; sftp
// takes -P for the port.
func (g *gw) sftpArgs(key, login string, extra ...string) []string {
	args := append([]string{"-P", strconv.Itoa(g.port)}, g.clientOpts(key)...)
	args = append(args, extra...)
	return append(args, login+"@127.0.0.1")
}

// scpArgs are scp's options (not the files): -P for the port.
func (g *gw) scpArgs(key string, extra ...string) []string {
	args := append([]string{"-P", strconv.Itoa(g.port)}, g.clientOpts(key)...)
	return append(args, extra...)
}

// remote is login@gw:path for scp and rsync.
func remote(login, path string) string { return login + "@127.0.0.1:" + path }

// rsyncSSH is rsync's -e value: ssh with the same options.
func (g *gw) rsyncSSH(key string) string {
	return "ssh -p " + strconv.Itoa(g.port) + " " + strings.Join(g.clientOpts(key), " ")
}

// execTool runs a client binary in dir; it is safe in any goroutine.
func execTool(timeout time.Duration, dir string, stdin io.Reader, name string, args ...string) (sshResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = stdin
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := sshResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("%s %s: timed out after %s\n%s", name, strings.Join(args, " "), timeout, r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("%s: %v", name, err)
	}
	return r, nil
}

func runTool(t *testing.T, timeout time.Duration, dir string, stdin io.Reader, name string, args ...string) sshResult {
	t.Helper()
	r, err := execTool(timeout, dir, stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sftpBatch runs `sftp -b -` with batch on stdin, in the local dir.
func (g *gw) sftpBatch(t *testing.T, u *user, login, dir, batch string) sshResult {
	t.Helper()
	return runTool(t, timeoutShort, dir, strings.NewReader(batch), "sftp", g.sftpArgs(u.key, login, "-b", "-")...)
}

func (g *gw) mustSFTP(t *testing.T, u *user, login, dir, batch string) string {
	t.Helper()
	r := g.sftpBatch(t, u, login, dir, batch)
	if r.code != 0 {
		t.Fatalf("sftp -b %q: %s", batch, r)
	}
	return r.stdout
}

// writeRandom writes size random bytes to path and returns their sha256.
func writeRandom(t *testing.T, path string, size int) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, int64(size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return sha256File(t, path)
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// vmHWM is the peak resident memory of pid in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// A 100 MB file goes up and comes back through sftp, owned by the user, with
// the gateway serving SFTP itself: no container, flat memory.
func TestSFTPPutGet(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "sofia", 20201, 20202)
	const proj = "files"
	dir := t.TempDir()
	sum := writeRandom(t, filepath.Join(dir, "big"), 100<<20)
	if err := os.Chmod(filepath.Join(dir, "big"), 0o666); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	pid := g.cmd.Process.Pid
	g.mu.Unlock()
	hwm0 := vmHWM(t, pid)

	out := g.mustSFTP(t, u, proj, dir, "pwd\nput big\nget big back\nls -ln big\n")
	if !strings.Contains(out, "Remote working directory: /workspace") {
		t.Errorf("start directory: want /workspace, sftp said %q", out)
	}
	host := filepath.Join(g.workspace(u, proj), "big")
	if got := sha256File(t, host); got != sum {
		t.Errorf("host copy: sha256 %s, want %s", got, sum)
	}
	if got := sha256File(t, filepath.Join(dir, "back")); got != sum {
		t.Errorf("downloaded copy: sha256 %s, want %s", got, sum)
	}
	if uid, gid := fileOwner(t, host); uid != u.uid || gid != u.gid {
		t.Errorf("host copy owned by %d:%d, want %d:%d", uid, gid, u.uid, u.gid)
	}
	// The client asks for the local mode, 0666; umask 022 makes it 0644.
	if m := fileMode(t, host).Perm(); m != 0o644 {
		t.Errorf("host copy mode %o, want 644 (0666 requested, umask 022)", m)
	}
	var lsLine string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 9 && strings.HasPrefix(f[0], "-") && f[len(f)-1] == "big" {
			lsLine = line
			if f[2] != strconv.Itoa(u.uid) || f[3] != strconv.Itoa(u.gid) {
				t.Errorf("ls -ln: want owner %d %d, got %q", u.uid, u.gid, line)
			}
			if f[4] != strconv.Itoa(100<<20) {
				t.Errorf("ls -ln: size %s, want %d", f[4], 100<<20)
			}
		}
	}
	if lsLine == "" {
		t.Errorf("no ls -ln line for big in %q", out)
	}
	if ids := containers(t, u.uid, proj); len(ids) != 0 {
		t.Errorf("sftp left containers: %v", ids)
	}
	if grown := vmHWM(t, pid) - hwm0; grown > 80<<10 {
		t.Errorf("gateway peak RSS grew %d MiB during a 100 MB put+get (race build): memory is not flat", grown>>10)
	}
}

// mkdir, rename, chmod, remove and rmdir act on the workspace as the user.
func TestSFTPFileOps(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "fritz", 20211, 20211)
	const proj = "ops"
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 1000)
	if err := os.Chmod(filepath.Join(dir, "f"), 0o640); err != nil {
		t.Fatal(err)
	}
	ws := g.workspace(u, proj)

	g.mustSFTP(t, u, proj, dir, "mkdir sub\nmkdir /workspace/abs\nput f sub/f\nput f \"with space\"\n")
	for _, p := range []string{"sub", "abs", "sub/f", "with space"} {
		if uid, gid := fileOwner(t, filepath.Join(ws, p)); uid != u.uid || gid != u.gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, uid, gid, u.uid, u.gid)
		}
	}
	if m := fileMode(t, filepath.Join(ws, "sub")); !m.IsDir() || m.Perm() != 0o755 {
		t.Errorf("mkdir sub: mode %v, want drwxr-xr-x", m)
	}
	if m := fileMode(t, filepath.Join(ws, "sub/f")).Perm(); m != 0o640 {
		t.Errorf("put of a 0640 file: mode %o on the host, want 640", m)
	}

	g.mustSFTP(t, u, proj, dir, "rename sub/f sub/g\nrename \"with space\" abs/moved\nchmod 600 sub/g\nchmod 700 abs\n")
	if exists(filepath.Join(ws, "sub/f")) || !exists(filepath.Join(ws, "sub/g")) {
		t.Errorf("rename sub/f sub/g did not happen")
	}
	if exists(filepath.Join(ws, "with space")) || !exists(filepath.Join(ws, "abs/moved")) {
		t.Errorf("rename of a name with a space did not happen")
	}
	if m := fileMode(t, filepath.Join(ws, "sub/g")).Perm(); m != 0o600 {
		t.Errorf("chmod 600: mode %o", m)
	}
	if m := fileMode(t, filepath.Join(ws, "abs")).Perm(); m != 0o700 {
		t.Errorf("chmod 700 on a directory: mode %o", m)
	}

	// rmdir of a non-empty directory fails; rm then rmdir succeed.
	if r := g.sftpBatch(t, u, proj, dir, "rmdir sub\n"); r.code == 0 || !exists(filepath.Join(ws, "sub")) {
		t.Errorf("rmdir of a non-empty directory: %s", r)
	}
	g.mustSFTP(t, u, proj, dir, "rm sub/g\nrmdir sub\nrm /workspace/abs/moved\nrmdir /workspace/abs\n")
	for _, p := range []string{"sub", "abs"} {
		if exists(filepath.Join(ws, p)) {
			t.Errorf("%s still exists after rm/rmdir", p)
		}
	}

	// Permission checks are the user's: a root-owned 0600 file in the
	// workspace cannot be read, a root-owned 0755 directory not written.
	if err := os.WriteFile(filepath.Join(ws, "rootonly"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, "rootdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := g.sftpBatch(t, u, proj, dir, "get rootonly got\n"); r.code == 0 || exists(filepath.Join(dir, "got")) && sha256File(t, filepath.Join(dir, "got")) == sha256File(t, filepath.Join(ws, "rootonly")) {
		t.Errorf("the user read a root-only file: %s", r)
	}
	if r := g.sftpBatch(t, u, proj, dir, "put f rootdir/f\n"); r.code == 0 || exists(filepath.Join(ws, "rootdir/f")) {
		t.Errorf("the user wrote into a root-owned 0755 directory: %s", r)
	}
	if r := g.sftpBatch(t, u, proj, dir, "chmod 666 rootonly\n"); r.code == 0 || fileMode(t, filepath.Join(ws, "rootonly")).Perm() != 0o600 {
		t.Errorf("the user chmodded a root-owned file: %s", r)
	}
	if ids := containers(t, u.uid, proj); len(ids) != 0 {
		t.Errorf("sftp left containers: %v", ids)
	}
}

// Nothing reaches outside the user's workspace: not .., not absolute paths,
// not symlinks planted in the workspace. The targets outside are writable
// by the user, so only confinement protects them. All attempts run in one
// batch (each line prefixed "-" so sftp goes on after an error) and are
// judged by their effects; a few run alone to check sftp reports failure.
func TestSFTPConfinement(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "alma", 20221, 20221)
	b := g.addUser(t, "boris", 20222, 20222)
	const proj = "jail"
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 100)

	// B's workspace with a secret; wide open.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("B's secret\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	g.mustSFTP(t, b, proj, dir, "put secret\n")
	wsB := g.workspace(b, proj)
	if err := os.Chmod(wsB, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(wsB, "secret"), 0o666); err != nil {
		t.Fatal(err)
	}
	// A file outside every workspace that the user could write.
	canary := filepath.Join(g.dir, "canary")
	if err := os.WriteFile(canary, []byte("canary\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(canary, 0o666); err != nil {
		t.Fatal(err)
	}

	g.mustSFTP(t, a, proj, dir, "put f\n") // creates A's workspace
	ws := g.workspace(a, proj)
	for link, target := range map[string]string{
		"etc-link":    "/etc",
		"root-link":   "/",
		"other":       wsB,
		"secret-link": filepath.Join(wsB, "secret"),
		"canary-link": canary,
		"up":          "../..",
		"tmp-link":    "/tmp",
	} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	tmpName := fmt.Sprintf("ds01-e2e-escape-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(filepath.Join("/tmp", tmpName)) })

	type snap map[string]string
	snapshot := func() snap {
		s := snap{}
		for _, root := range []string{"/etc/passwd", "/etc/hostname", g.dir} {
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil
				}
				if p == ws || p == g.dataDir {
					return filepath.SkipDir // A's own workspace and the store change
				}
				fi, err := os.Lstat(p)
				if err != nil {
					return nil
				}
				v := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
				if fi.Mode().IsRegular() && fi.Size() < 1<<20 {
					v += " " + sha256File(t, p)
				}
				s[p] = v
				return nil
			})
		}
		return s
	}
	before := snapshot()

	// Names that must never show up in a listing of A's.
	forbidden := map[string]bool{}
	for _, d := range []string{"/", "/etc", wsB, filepath.Dir(filepath.Dir(ws)), filepath.Dir(ws)} {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			forbidden[e.Name()] = true
		}
	}
	mine, _ := os.ReadDir(ws)
	for _, e := range mine {
		delete(forbidden, e.Name())
	}
	// The visible tree's own entries: /workspace and /home/<user>, where
	// ~/.vscode-server lives.
	delete(forbidden, "workspace")
	delete(forbidden, "home")

	reads := []string{
		"get etc-link/passwd",
		"get root-link/etc/passwd",
		"get other/secret",
		"get secret-link",
		"get canary-link",
		fmt.Sprintf("get up/%s/%s/secret", b.name, proj),
		"get ../../etc/passwd",
		"get /etc/passwd",
		"get /workspace/../../etc/passwd",
		"get /workspace/../etc/passwd",
		"get ../etc/passwd",
	}
	var batch strings.Builder
	for i, r := range reads {
		fmt.Fprintf(&batch, "-%s got-%d\n", r, i)
	}
	lists := []string{"root-link/", "etc-link/", "other/", "up/", "tmp-link/", "/", "..", "/workspace/..", "../..", "/etc", "/tmp"}
	for _, l := range lists {
		fmt.Fprintf(&batch, "-ls -1a %s\n", l)
	}
	for _, line := range []string{
		"put f other/x",
		"put f other/secret",
		"put f secret-link",
		"put f canary-link",
		"put f up/x",
		"put f tmp-link/" + tmpName,
		"put f /tmp/" + tmpName,
		"put f ../../x",
		"put f /x-ds01-e2e",
		"rename f other/x",
		"rename f ../../x",
		"rename other/secret stolen",
		"rename secret-link other/moved",
		"chmod 777 other/secret",
		"chmod 777 secret-link",
		"chmod 777 canary-link",
		"chmod 700 other",
		"chmod 700 up",
		"rm other/secret",
		"rm up/" + b.name + "/" + proj + "/secret",
		"mkdir other/d",
		"mkdir up/d",
		"rmdir other",
		"ln other/secret hl",
		"ln canary-link hl2",
		"symlink /etc mylink",
		"get mylink/passwd got-mylink",
		"cd etc-link",
		"get passwd got-cd",
		"cd /",
		"put f x-at-root",
		"cd /etc",
		"get passwd got-cd2",
	} {
		fmt.Fprintf(&batch, "-%s\n", line)
	}
	r := g.sftpBatch(t, a, proj, dir, batch.String())

	// Nothing came down.
	got, _ := filepath.Glob(filepath.Join(dir, "got-*"))
	for _, p := range got {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			t.Errorf("%s: downloaded %d bytes from outside: %q", filepath.Base(p), len(b), lastLines(string(b), 2))
		}
	}
	// No listing shows anything from outside.
	var cmd string
	for _, line := range strings.Split(r.stdout, "\n") {
		if c, ok := strings.CutPrefix(line, "sftp> "); ok {
			cmd = c
			continue
		}
		name := filepath.Base(strings.TrimSpace(line))
		if strings.HasPrefix(cmd, "-ls") && forbidden[name] {
			t.Errorf("%s listed %q from outside the workspace", strings.TrimPrefix(cmd, "-"), strings.TrimSpace(line))
		}
	}
	// Nothing changed or appeared outside; A's own files stayed.
	after := snapshot()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("outside the workspace, %s changed: %q -> %q", p, v, after[p])
		}
	}
	for p, v := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("outside the workspace, %s was created (%s)", p, v)
		}
	}
	for _, p := range []string{filepath.Join("/tmp", tmpName), "/x-ds01-e2e"} {
		if exists(p) {
			os.Remove(p)
			t.Errorf("%s was created on the host", p)
		}
	}
	if !exists(filepath.Join(ws, "f")) {
		t.Errorf("f left A's workspace")
	}
	for _, p := range []string{"hl", "hl2"} {
		if exists(filepath.Join(ws, p)) {
			t.Errorf("a hard link %s to a file outside was made in the workspace", p)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("the batch's output: %s", r)
	}

	// sftp itself reports the refusals as errors.
	for _, line := range []string{"get etc-link/passwd got", "get /etc/passwd got", "put f other/x", "rm other/secret"} {
		if r := g.sftpBatch(t, a, proj, dir, line+"\n"); r.code == 0 {
			t.Errorf("%s: sftp exit 0: %s", line, r)
		}
	}
	if !exists(filepath.Join(wsB, "secret")) || exists(filepath.Join(wsB, "x")) {
		t.Errorf("B's workspace changed")
	}
}

// Another user logging into a project of the same name sees their own files.
func TestSFTPOtherUserSeesOwnProject(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "agnes", 20231, 20231)
	b := g.addUser(t, "bruno", 20232, 20232)
	const proj = "shared-name"
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "a-file"), 10)
	writeRandom(t, filepath.Join(dir, "b-file"), 10)
	g.mustSFTP(t, a, proj, dir, "put a-file\n")
	out := g.mustSFTP(t, b, proj, dir, "put b-file\nls -1\n")
	if strings.Contains(out, "a-file") || !strings.Contains(out, "b-file") {
		t.Errorf("B's listing of %s: %q", proj, out)
	}
	if exists(filepath.Join(g.workspace(b, proj), "a-file")) || exists(filepath.Join(g.workspace(a, proj), "b-file")) {
		t.Errorf("files crossed workspaces")
	}
	if r := g.sftpBatch(t, b, proj, dir, "get a-file got\n"); r.code == 0 {
		t.Errorf("B fetched A's file: %s", r)
	}
}
