package session

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ds01/ds01-gateway/session/gpu"
)

// A command without patterns is exec'd as it is; with patterns, a constant
// script expands only them, as the remote shell did, and nothing in any
// word is ever run: checked with the real /bin/sh.
func TestTransferCommandGlob(t *testing.T) {
	plain := TransferCommand{Argv: []string{"rsync", "--server", "--", ".", "x"}}
	if got := plain.execArgv(); !reflect.DeepEqual(got, plain.Argv) {
		t.Errorf("no patterns: %q", got)
	}

	dir := t.TempDir()
	for _, f := range []string{"one.txt", "two.txt", "*.txt", "a b.txt", "-e.txt", "q?"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := TransferCommand{
		Argv: []string{"printf", "<%s>", "*.txt", "t*.txt", "[*].txt", "q[?]", "nomatch*", "$(touch pwned)*", "`touch pwned`", "a b*"},
		Glob: []bool{false, false, false, true, true, true, true, true, false, true},
	}
	argv := cmd.execArgv()
	if argv[0] != "/bin/sh" {
		t.Fatalf("with patterns: %q", argv)
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "<*.txt><two.txt><*.txt><q?><nomatch*><$(touch pwned)*><`touch pwned`><a b.txt>"
	if string(out) != want {
		t.Errorf("expanded:\n got %s\nwant %s", out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Errorf("a word was run as a command")
	}
}

// Transfer containers count against max_containers_per_user with the
// project containers, both ways, and concurrent transfers cannot
// overshoot the cap.
func TestTransfersCountAgainstContainerCap(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, 0)
	pol, err := gpu.ParsePolicy([]byte("defaults:\n  max_containers_per_user: 1\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m.cfg.Policy = pol
	ctx := context.Background()

	l, err := m.Attach(ctx, u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.transfers.reserve(u)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "sftp and scp need none") {
		t.Errorf("rsync with a project container running under a cap of 1: %v", err)
	}
	l.Release() // no grace: retired at once
	waitFor(t, "p retired", func() bool { return m.gpus.UserLimits(ctx, u).Containers == 0 })

	release, err := m.transfers.reserve(u)
	if err != nil {
		t.Fatalf("rsync with no container: %v", err)
	}
	if _, err := m.Attach(ctx, u, "q", Default, io.Discard); !errors.Is(err, ErrLimit) {
		t.Errorf("a login while a transfer runs under a cap of 1: %v", err)
	}
	release()
	l, err = m.Attach(ctx, u, "q", Default, io.Discard)
	if err != nil {
		t.Fatalf("a login after the transfer: %v", err)
	}
	l.Release()
	waitFor(t, "q retired", func() bool { return m.gpus.UserLimits(ctx, u).Containers == 0 })

	var ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := m.transfers.reserve(u); err == nil {
				ok.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := ok.Load(); n != 1 {
		t.Errorf("16 concurrent transfers under a cap of 1: %d ran", n)
	}
}
