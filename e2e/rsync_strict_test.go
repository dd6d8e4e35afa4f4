package e2e

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The real rsync client against the strict rsync path: what users do
// works (-z, --partial, --delete, names with spaces and shell characters,
// "~/x", wildcards in what is pulled), and commands that only pose as
// rsync's server are refused with nothing run: no container, no file.
func TestRsyncStrict(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "rhea", 24101, 24101)
	const proj = "strict"
	ws := g.workspace(u, proj)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src)
	odd := "x y$(touch pwned)`touch pwned2`;&|.txt"
	writeRandom(t, filepath.Join(src, odd), 100)

	g.mustRsync(t, u, "-az", "--partial", src+"/", remote(proj, "dst/"))
	sameTree(t, "rsync -az --partial", src, filepath.Join(ws, "dst"))
	for _, p := range []string{"pwned", "pwned2", "dst/pwned", "dst/pwned2"} {
		if exists(filepath.Join(ws, p)) {
			t.Errorf("a file name ran as a command: %s exists", p)
		}
	}

	if err := os.Remove(filepath.Join(src, odd)); err != nil {
		t.Fatal(err)
	}
	g.mustRsync(t, u, "-a", "--delete", src+"/", remote(proj, "dst/"))
	sameTree(t, "rsync --delete", src, filepath.Join(ws, "dst"))

	back := filepath.Join(dir, "back")
	g.mustRsync(t, u, "-a", remote(proj, "dst/sub dir/"), back+"/")
	sameTree(t, "rsync pull of a directory with a space", filepath.Join(src, "sub dir"), back)

	g.mustRsync(t, u, filepath.Join(src, "a.bin"), remote(proj, "~/tilde.bin"))
	if !exists(filepath.Join(ws, "tilde.bin")) {
		t.Errorf("rsync to ~/tilde.bin: not in the workspace")
	}
	g.mustRsync(t, u, remote(proj, "~/tilde.bin"), filepath.Join(dir, "tilde-back"))
	if sha256File(t, filepath.Join(dir, "tilde-back")) != sha256File(t, filepath.Join(src, "a.bin")) {
		t.Errorf("rsync from ~/tilde.bin: wrong content")
	}

	// The remote shell used to expand a pulled pattern; the container does.
	glob := filepath.Join(dir, "glob")
	g.mustRsync(t, u, remote(proj, "dst/sub dir/*.txt"), glob+"/")
	for name, sum := range treeSums(t, glob) {
		if name != "." && name != "file with spaces.txt" || sum == "" {
			t.Errorf("rsync pull of dst/sub dir/*.txt: got %q", name)
		}
	}
	if !exists(filepath.Join(glob, "file with spaces.txt")) {
		t.Errorf("rsync pull of dst/sub dir/*.txt: nothing came")
	}

	// --rsync-path names the program the remote shell ran; the gateway
	// runs the image's rsync whatever the path, never a user's file.
	fake := filepath.Join(ws, "rsync")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ntouch /workspace/pwned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fake, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	g.mustRsync(t, u, "--rsync-path=/workspace/rsync", filepath.Join(src, "a.bin"), remote(proj, "via-path.bin"))
	if !exists(filepath.Join(ws, "via-path.bin")) {
		t.Errorf("rsync --rsync-path=/workspace/rsync: nothing came")
	}

	// Old clients' protocol, and -s, whose arguments would come on stdin
	// where the gateway cannot check them: refused, saying so.
	g.mustRsync(t, u, "--protocol=29", "-a", filepath.Join(src, "a.bin"), remote(proj, "p29.bin"))
	if r := g.rsync(t, u, "-s", filepath.Join(src, "a.bin"), remote(proj, "s.bin")); r.code == 0 || !strings.Contains(r.stderr, "--secluded-args (-s, --protect-args) is not supported") {
		t.Errorf("rsync -s: %s", r)
	}

	waitNoTransferContainers(t, u.uid, 10*time.Second)
	for _, cmd := range []string{
		"rsync --server; touch /workspace/pwned",
		"rsync --server -logDtpre.iLsfxCIvu . x; touch /workspace/pwned",
		"rsync --server -logDtpre.iLsfxCIvu . $(touch /workspace/pwned)",
		"rsync --server -logDtpre.iLsfxCIvu . `touch /workspace/pwned`",
		"rsync --server -logDtpre.iLsfxCIvu . x\ntouch /workspace/pwned",
		"rsync --server --daemon --config=/workspace/rsyncd.conf .",
		"rsync --server -e 'sh -c touch\\ /workspace/pwned' . x",
		"rsync --server --rsh='touch /workspace/pwned' --files-from=h:x . x",
		"workspace/rsync --server -l . x",
	} {
		r := g.ssh(t, u, proj, cmd)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "ds01: rsync: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: want exit 1 and one line \"ds01: rsync: ...\" on stderr, got %s", cmd, r)
		}
		if ids := transferContainers(t, u.uid); len(ids) != 0 {
			t.Errorf("%q: a transfer container was started: %v", cmd, ids)
		}
	}
	if exists(filepath.Join(ws, "pwned")) {
		t.Errorf("a refused command ran: /workspace/pwned exists")
	}
	if ids := containers(t, u.uid, proj); len(ids) != 0 {
		t.Errorf("refused rsync commands started project containers: %v", ids)
	}
	if !strings.Contains(g.out.String(), "rsync refused") {
		t.Errorf("refusals are not logged")
	}
}

// Transfer containers count against max_containers_per_user, run under
// small fixed limits, and end at transfer_timeout; sftp needs no
// container and still works at the cap.
func TestRsyncLimits(t *testing.T) {
	limits := filepath.Join(t.TempDir(), "resource-limits.yaml")
	if err := os.WriteFile(limits, []byte("defaults:\n  max_containers_per_user: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOpts{Extra: map[string]string{"limits_file": limits, "transfer_timeout": "6s"}})
	u := g.addUser(t, "rory", 24102, 24102)
	const proj = "lim"
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	writeRandom(t, big, 1<<20)

	// A slow push: at 20 KB/s it would take 50 s.
	type result struct {
		r    sshResult
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		r, err := execTool(2*time.Minute, dir, nil, "rsync", "-e", g.rsyncSSH(u.key), "--bwlimit=20", big, remote(proj, "big"))
		if err != nil {
			r.stderr += err.Error()
		}
		done <- result{r, time.Since(start)}
	}()
	var ids []string
	for deadline := time.Now().Add(30 * time.Second); len(ids) == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		ids = transferContainers(t, u.uid)
	}
	if len(ids) != 1 {
		t.Fatalf("want one transfer container during the push, have %v", ids)
	}
	cpus := int64(2e9)
	if n := int64(goruntime.NumCPU()) * 1e9; n < cpus {
		cpus = n
	}
	want := "64 " + strconv.FormatInt(cpus, 10) + " 4294967296"
	if got := strings.TrimSpace(docker(t, "inspect", "-f", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", ids[0])); got != want {
		t.Errorf("transfer container limits (pids nanocpus memory): %q, want %q", got, want)
	}
	if r := g.ssh(t, u, "other", "true"); r.code == 0 || !strings.Contains(r.stderr, "max_containers_per_user") {
		t.Errorf("a login while the transfer runs, at a cap of 1: %s", r)
	}

	res := <-done
	if res.r.code == 0 || !strings.Contains(res.r.stderr, "transfer_timeout") {
		t.Errorf("a transfer past transfer_timeout: %s", res.r)
	}
	if res.took > 30*time.Second {
		t.Errorf("a transfer past a 6s transfer_timeout ended after %s", res.took)
	}
	waitNoTransferContainers(t, u.uid, 10*time.Second)

	// With a project container running, rsync is refused and says what
	// works instead; sftp does.
	hold := g.startSSH(t, u, proj, "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	small := filepath.Join(dir, "small")
	writeRandom(t, small, 1000)
	if r := g.rsync(t, u, small, remote(proj, "small")); r.code == 0 || !strings.Contains(r.stderr, "sftp and scp need none") {
		t.Errorf("rsync at the cap: %s", r)
	}
	g.mustSFTP(t, u, proj, dir, "put small\n")
	hold.stop()
	waitContainers(t, u.uid, proj, 0, 20*time.Second)
	// The cap counts running containers: give the gateway its retire.
	var r sshResult
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r = g.rsync(t, u, small, remote(proj, "small2")); r.code == 0 {
			break
		}
	}
	if r.code != 0 {
		t.Errorf("rsync after the project container retired: %s", r)
	}
}
