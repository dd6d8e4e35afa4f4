package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The user commands share the store with a running gateway: a new key
// works on the next login, a removed user is refused on the next one.
func TestUserCommandsWhileServing(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "uma", 20121, 20121)
	const proj = "keys"
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(gatewayBin, append(args, "--config", g.cfgPath)...).CombinedOutput()
		return string(out), err
	}

	laptop, laptopPub := newKey(t, t.TempDir(), "laptop")
	if r := runSSH(t, timeoutShort, nil, append(g.sshArgs(laptop, proj), "true")...); r.code != 255 {
		t.Fatalf("a key not yet added must be refused: %s", r)
	}
	if out, err := cli("user", "key", "add", "uma", "--key-file", laptopPub); err != nil {
		t.Fatalf("user key add: %v\n%s", err, out)
	}
	if r := runSSH(t, timeoutLong, nil, append(g.sshArgs(laptop, proj), "id -u")...); r.code != 0 || r.stdout != "20121\n" {
		t.Fatalf("login with the added key: %s", r)
	}

	out, err := cli("user", "list")
	if err != nil || !strings.Contains(out, "uma") || !strings.Contains(out, "20121") {
		t.Errorf("user list: %v\n%s", err, out)
	}
	// A key belongs to one user only.
	if out, err := cli("user", "add", "other", "--uid", "20122", "--key-file", laptopPub); err == nil {
		t.Errorf("a key registered twice was accepted:\n%s", out)
	}
	// Bad input is refused with a clear error and exit 1 or 2.
	for _, args := range [][]string{
		{"user", "add", "Bad Name", "--uid", "20123", "--key-file", laptopPub},
		{"user", "add", "nokey", "--uid", "20124"},
		{"user", "add", "badkey", "--uid", "20125", "--key-file", g.cfgPath},
	} {
		if out, err := cli(args...); err == nil {
			t.Errorf("%v accepted:\n%s", args, out)
		}
	}

	if out, err := cli("user", "remove", "uma"); err != nil {
		t.Fatalf("user remove: %v\n%s", err, out)
	}
	for _, key := range []string{u.key, laptop} {
		if r := runSSH(t, timeoutShort, nil, append(g.sshArgs(key, proj), "true")...); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("removed user's key %s: want Permission denied, got %s", key, r)
		}
	}
}

// Root's ids never reach a container: user add refuses uid and gid 0
// with one clear line, and system ids unless --system says so.
func TestUserAddRefusesRoot(t *testing.T) {
	g := startGateway(t, gwOpts{})
	_, pub := newKey(t, t.TempDir(), "k")
	cli := func(args ...string) sshResult {
		t.Helper()
		return runTool(t, timeoutShort, "", nil, gatewayBin, append(args, "--config", g.cfgPath)...)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--uid", "0"}, "--uid 0 is root's"},
		{[]string{"--uid", "0", "--system"}, "--uid 0 is root's"},
		{[]string{"--uid", "22010", "--gid", "0"}, "--gid 0 is root's"},
		{[]string{"--uid", "33"}, "--uid 33 belongs to a system account"},
		{[]string{"--uid", "22011", "--gid", "42"}, "--gid 42 belongs to a system account"},
	} {
		r := cli(append([]string{"user", "add", "rooty", "--key-file", pub}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("user add %v: %s\nwant exit 1 and one line saying %q", tc.args, r, tc.want)
		}
	}
	if r := cli("user", "list"); r.code != 0 || strings.Contains(r.stdout, "rooty") {
		t.Errorf("a refused user was registered: %s", r)
	}
	// An admin who means it registers a system account with --system.
	if r := cli("user", "add", "svc", "--uid", "998", "--system", "--key-file", pub); r.code != 0 {
		t.Errorf("user add --system: %s", r)
	}
}

// `make run` (serve --dev) as root registers an unprivileged development
// user with root's own keys, so the printed ssh command works and nothing
// runs as root.
func TestDevServeAsRoot(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home") // root's ~ for this run: no keys yet
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := filepath.Join(dir, "ds01.yaml")
	body := "listen: 127.0.0.1:" + strconv.Itoa(port) + "\ndata_dir: " + filepath.Join(dir, "data") +
		"\nworkspace_root: " + filepath.Join(dir, "ws") + "/{user}\nbase_image: " + baseImage + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(gatewayBin, "serve", "--dev", "--config", cfg)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GORACE=" + os.Getenv("GORACE")}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "hello@localhost") {
		select {
		case <-done:
			t.Fatalf("serve --dev exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve --dev printed no ssh command:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := regexp.MustCompile(`User (\S+) \(uid (\d+)\) is registered`).FindStringSubmatch(out.String())
	if m == nil || m[1] == "root" {
		t.Fatalf("serve --dev registered no unprivileged user:\n%s", out.String())
	}
	if uid, _ := strconv.Atoi(m[2]); uid < 1000 {
		t.Errorf("development user %s has uid %d", m[1], uid)
	}
	list := runTool(t, timeoutShort, "", nil, gatewayBin, "user", "list", "--config", cfg)
	if list.code != 0 || strings.Contains(list.stdout, "root") || !strings.Contains(list.stdout, m[1]) {
		t.Errorf("user list: %s", list)
	}
	// The key --dev made in root's ~/.ssh logs in as that user (the
	// command login: no container needed to see who one is).
	g := &gw{port: port}
	r := runSSH(t, timeoutShort, nil, append(g.sshArgs(filepath.Join(home, ".ssh", "id_ed25519"), "ds01"), "check-limits")...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "user: "+m[1]+",") {
		t.Errorf("ssh with root's key: %s", r)
	}
}
