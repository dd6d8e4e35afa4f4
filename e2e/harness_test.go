package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gwOpts changes the generated config. Zero values mean the defaults below.
type gwOpts struct {
	RetireAfter string            // default "2s"
	Extra       map[string]string // more top-level YAML keys, values written verbatim
	Lifecycle   map[string]string // the lifecycle: block's keys, values written verbatim; none: no block
	StartWait   time.Duration     // how long start waits for the port; default 30s
}

// gw is one gateway process under test with its own config, data dir,
// workspace root and port.
type gw struct {
	t       *testing.T
	dir     string
	cfgPath string
	dataDir string
	wsRoot  string // workspace_root without the {user} part
	port    int
	retire  time.Duration
	wait    time.Duration // start's limit

	out *syncBuffer // stdout+stderr of every process started so far

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
	uids []int         // users registered: whose containers and images to remove
}

func startGateway(t *testing.T, opts gwOpts) *gw {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if opts.RetireAfter == "" {
		opts.RetireAfter = "2s"
	}
	retire, err := time.ParseDuration(opts.RetireAfter)
	if err != nil {
		t.Fatalf("bad RetireAfter: %v", err)
	}
	dir := t.TempDir()
	g := &gw{
		t:       t,
		dir:     dir,
		cfgPath: filepath.Join(dir, "ds01.yaml"),
		dataDir: filepath.Join(dir, "data"),
		wsRoot:  filepath.Join(dir, "ws"),
		port:    freePort(t),
		retire:  retire,
		wait:    opts.StartWait,
		out:     &syncBuffer{},
	}
	if g.wait == 0 {
		g.wait = 30 * time.Second
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:%d\n", g.port)
	fmt.Fprintf(&cfg, "data_dir: %s\n", g.dataDir)
	fmt.Fprintf(&cfg, "workspace_root: %s/{user}\n", g.wsRoot)
	fmt.Fprintf(&cfg, "base_image: %s\n", baseImage)
	fmt.Fprintf(&cfg, "retire_after: %s\n", opts.RetireAfter)
	fmt.Fprintf(&cfg, "command_login: ds01\n")
	for k, v := range opts.Extra {
		fmt.Fprintf(&cfg, "%s: %s\n", k, v)
	}
	if _, set := opts.Extra["shutdown_timeout"]; !set {
		cfg.WriteString("shutdown_timeout: 5s\n") // within stop's 10 s
	}
	if len(opts.Lifecycle) > 0 {
		cfg.WriteString("lifecycle:\n")
		for _, k := range slices.Sorted(maps.Keys(opts.Lifecycle)) {
			fmt.Fprintf(&cfg, "  %s: %s\n", k, opts.Lifecycle[k])
		}
	}
	if err := os.WriteFile(g.cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanup)
	g.start(t)
	return g
}

func (g *gw) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)) }

// start launches `serve` and waits until the port accepts connections.
func (g *gw) start(t *testing.T) {
	t.Helper()
	fmt.Fprintf(g.out, "\n=== e2e: starting gateway (%s) ===\n", time.Now().Format(time.TimeOnly))
	cmd := exec.Command(gatewayBin, "serve", "--config", g.cfgPath)
	cmd.Dir = g.dir
	cmd.Stdout = g.out
	cmd.Stderr = g.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(g.out, "=== e2e: gateway exited: %v ===\n", err)
		close(done)
	}()
	g.mu.Lock()
	g.cmd, g.done = cmd, done
	g.mu.Unlock()

	deadline := time.Now().Add(g.wait)
	for {
		select {
		case <-done:
			t.Fatalf("gateway exited before listening:\n%s", g.out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", g.addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not listening on %s after %s:\n%s", g.addr(), g.wait, g.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to the running gateway.
func (g *gw) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	g.mu.Lock()
	cmd := g.cmd
	g.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and waits; SIGKILL after 10s.
func (g *gw) stop(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("gateway did not exit within 10s of SIGTERM; killing it")
		_ = cmd.Process.Kill()
		<-done
	}
}

// kill9 simulates a crash: no chance to clean up.
func (g *gw) kill9(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

func (g *gw) restart(t *testing.T) {
	t.Helper()
	g.stop(t)
	g.start(t)
}

func (g *gw) cleanup() {
	t := g.t
	g.stop(t)
	g.checkOutput(t)
	g.mu.Lock()
	uids := append([]int(nil), g.uids...)
	g.mu.Unlock()
	for _, uid := range uids {
		removeUserArtifacts(t, uid)
	}
	if t.Failed() || os.Getenv("DS01_E2E_VERBOSE") == "1" {
		t.Logf("gateway output (last 200 lines):\n%s", lastLines(g.out.String(), 200))
	}
}

// checkOutput fails the test when the gateway raced or panicked during it.
func (g *gw) checkOutput(t *testing.T) {
	out := g.out.String()
	if strings.Contains(out, "WARNING: DATA RACE") {
		t.Errorf("gateway: data race detected (see gateway output)")
	}
	if strings.Contains(out, "panic: ") || strings.Contains(out, "fatal error: ") {
		t.Errorf("gateway: panic or fatal error (see gateway output)")
	}
}

// workspace is the host directory of a user's project.
func (g *gw) workspace(u *user, project string) string {
	return filepath.Join(g.wsRoot, u.name, project)
}

type user struct {
	name     string
	uid, gid int
	key      string // private key path
	pub      string // public key path
}

// addUser registers a user with a fresh ed25519 key. It works while serve runs.
func (g *gw) addUser(t *testing.T, name string, uid, gid int, extra ...string) *user {
	t.Helper()
	u := &user{name: name, uid: uid, gid: gid}
	u.key, u.pub = newKey(t, g.dir, name)
	g.mu.Lock()
	g.uids = append(g.uids, uid)
	g.mu.Unlock()
	// Leftovers from an earlier, interrupted run with the same uid would make
	// the assertions below lie.
	removeUserArtifacts(t, uid)
	args := append([]string{"user", "add", name,
		"--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(gid),
		"--key-file", u.pub, "--config", g.cfgPath}, extra...)
	out, err := exec.Command(gatewayBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("user add %s: %v\n%s", name, err, out)
	}
	return u
}

func newKey(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(dir, name+"_key")
	out, err := exec.Command("ssh-keygen", "-t", "ed25519", "-N", "", "-C", name, "-f", priv, "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return priv, priv + ".pub"
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fileOwner returns the uid and gid owning path.
func fileOwner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
