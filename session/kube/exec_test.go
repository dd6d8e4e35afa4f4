package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// runWrapped runs the exec wrapper here, as the pod's sh would.
func runWrapped(t *testing.T, spec runtime.ExecSpec, token string) (string, int) {
	t.Helper()
	argv := execArgv(spec, token)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// Nothing a user controls is parsed by the shell: arguments, environment
// values and the directory arrive byte for byte.
func TestExecWrapperQuoting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "$(touch pwned) 'x'")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(t.TempDir(), "pwned")
	evil := []string{"$(touch " + canary + ")", "`touch " + canary + "`", "a b", `'"\`, "line\nbreak", "-n", "", "*", "; touch " + canary}
	spec := runtime.ExecSpec{
		Cmd: append([]string{"printf", `[%s]\n`}, evil...),
		Dir: dir,
		Env: []string{"A=$(touch " + canary + ")", "B=x y", "bad-name=1", "NOVALUE", "C="},
	}
	out, code := runWrapped(t, spec, "tok")
	var want strings.Builder
	for _, e := range evil {
		fmt.Fprintf(&want, "[%s]\n", e)
	}
	if code != 0 || out != want.String() {
		t.Errorf("exit %d, output\n%s\nwant\n%s", code, out, want.String())
	}
	spec.Cmd = []string{"sh", "-c", `printf '%s|%s|%s|%s|%s\n' "$PWD" "$A" "$B" "${C-unset}" "$DS01_EXEC"`}
	out, _ = runWrapped(t, spec, "tok")
	if want := dir + "|$(touch " + canary + ")|x y||tok\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("the shell ran a user's string")
	}
}

func TestExecWrapperExit(t *testing.T) {
	if _, code := runWrapped(t, runtime.ExecSpec{Cmd: []string{"sh", "-c", "exit 7"}}, "t"); code != 7 {
		t.Errorf("exit %d, want 7", code)
	}
	out, code := runWrapped(t, runtime.ExecSpec{Cmd: []string{"true"}, Dir: "/nonexistent"}, "t")
	if code != 1 || !strings.Contains(out, "/nonexistent") {
		t.Errorf("missing dir: exit %d %q", code, out)
	}
	// No terminal here: the size setting fails silently and the command runs.
	if out, code := runWrapped(t, runtime.ExecSpec{Cmd: []string{"echo", "ok"}, Tty: true, Rows: 40, Cols: 100}, "t"); code != 0 || out != "ok\n" {
		t.Errorf("tty: exit %d %q", code, out)
	}
}

// The signal script finds the exec's own process by its token, not a child
// that inherited it, and not another exec's.
func TestSignalScript(t *testing.T) {
	// Under nohup (a CI runner's) SIGHUP is ignored, and an ignored signal
	// stays ignored in every child, so the hang-up below would be lost.
	// While Go handles it, children start with the default action.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	start := func(token, script string) *exec.Cmd {
		argv := execArgv(runtime.ExecSpec{Cmd: []string{"sh", "-c", script}}, token)
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The sleep too: an orphan keeps its token.
			exec.Command("pkill", "-KILL", "-P", strconv.Itoa(cmd.Process.Pid)).Run()
			cmd.Process.Kill()
			cmd.Wait()
		})
		return cmd
	}
	// Random tokens, as Exec makes them: an earlier run's orphans must
	// not match.
	tok := func() string {
		var b [8]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	a, b, c := tok(), tok(), tok()
	// sh stays the parent of sleep: both carry the token.
	target := start(a, "sleep 30; true")
	other := start(b, "sleep 30; true")
	signal := func(token, sig, group string) int {
		cmd := exec.Command("/bin/sh", "-c", signalScript, "ds01-signal", token, sig, group)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for signal(a, "TERM", "0") == 3 { // until the wrapper has exec'd
		if time.Now().After(deadline) {
			t.Fatal("process not found")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := target.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("target ended with %v", err)
	}
	if other.ProcessState != nil {
		t.Error("the other exec was signalled")
	}
	if code := signal(c, "TERM", "0"); code != 3 {
		t.Errorf("unknown token: exit %d", code)
	}
	// A group signal falls back to the process when it leads no group.
	for signal(b, "HUP", "1") == 3 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := other.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
		t.Errorf("other ended with %v", err)
	}
}

func TestExitStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want runtime.ExitStatus
	}{
		{nil, runtime.ExitStatus{}},
		{utilexec.CodeExitError{Err: errors.New("x"), Code: 7}, runtime.ExitStatus{Code: 7}},
		{fmt.Errorf("w: %w", utilexec.CodeExitError{Err: errors.New("x"), Code: 143}), runtime.ExitStatus{Code: 143, Signal: syscall.SIGTERM}},
		{utilexec.CodeExitError{Err: errors.New("x"), Code: 128}, runtime.ExitStatus{Code: 128}},
	} {
		got, err := exitStatus(c.err)
		if err != nil || got != c.want {
			t.Errorf("exitStatus(%v) = %+v, %v", c.err, got, err)
		}
	}
	if _, err := exitStatus(apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "p")); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("gone pod: %v", err)
	}
}

// Exec runs as the pod's user or not at all.
func TestExecUser(t *testing.T) {
	k, cs := newFake(t, Config{}, nil)
	defer kubelet(t, cs, running)()
	id, err := k.Launch(context.Background(), testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	fresh := New(k.c, k.cfg, nil, k.log) // knows the pod from the API only
	for _, kk := range []*Kube{k, fresh} {
		for _, u := range []string{"28100:28100", "28100"} {
			if err := kk.checkUser(context.Background(), id, u); err != nil {
				t.Errorf("user %s: %v", u, err)
			}
		}
		for _, u := range []string{"0:0", "28101:28100", "28100:0", "root"} {
			if err := kk.checkUser(context.Background(), id, u); err == nil {
				t.Errorf("user %s accepted", u)
			}
		}
	}
	if _, err := k.Exec(context.Background(), id, runtime.ExecSpec{Cmd: []string{"id"}, User: "0"}); err == nil {
		t.Error("exec as root accepted")
	}
	if _, err := k.Exec(context.Background(), id, runtime.ExecSpec{Cmd: []string{"id"}, Dir: "rel"}); err == nil {
		t.Error("relative dir accepted")
	}
	if err := fresh.checkUser(context.Background(), "gone", "28100"); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("gone pod: %v", err)
	}
}

func TestSizeQueue(t *testing.T) {
	q := newSizeQueue()
	q.push(10, 20)
	q.push(30, 40) // only the latest counts
	if s := q.Next(); s.Height != 30 || s.Width != 40 {
		t.Errorf("size %+v", s)
	}
	got := make(chan bool)
	go func() { got <- q.Next() == nil }()
	q.close()
	select {
	case ok := <-got:
		if !ok {
			t.Error("a size after close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after close")
	}
}

// One writer may take both stdout and stderr, as with Docker.
func TestStreamOneWriter(t *testing.T) {
	for range 50 {
		outR, outW := io.Pipe()
		errR, errW := io.Pipe()
		p := &process{out: outR, errOut: errR}
		go func() {
			for range 100 {
				outW.Write([]byte("o"))
			}
			outW.Close()
		}()
		go func() {
			for range 100 {
				errW.Write([]byte("e"))
			}
			errW.Close()
		}()
		var b bytes.Buffer
		if err := p.Stream(&b, &b); err != nil {
			t.Fatal(err)
		}
		if s := b.String(); strings.Count(s, "o") != 100 || strings.Count(s, "e") != 100 {
			t.Fatalf("got %d o, %d e", strings.Count(s, "o"), strings.Count(s, "e"))
		}
	}
}
