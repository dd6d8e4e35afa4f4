package docker

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// The wait ends when the process exits, and not before: a session's output
// is cut only once its process is gone.
func TestAwaitExitWaitsForTheProcess(t *testing.T) {
	cmd := startSleep(t)
	f, err := openPidfd(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	exited := make(chan error, 1)
	go func() { exited <- awaitExit(f) }()
	select {
	case err := <-exited:
		t.Fatalf("returned while the process runs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting 5 s after the process exited")
	}
}

// A process that is already gone, reaped, is reported as done.
func TestOpenPidfdOfAGoneProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if f, err := openPidfd(cmd.Process.Pid); !errors.Is(err, os.ErrProcessDone) {
		if f != nil {
			f.Close() // the PID was taken again already: nothing to test
			t.Skip("PID reused")
		}
		t.Fatalf("got %v, want os.ErrProcessDone", err)
	}
}

// Closing the pidfd ends a wait, so a session that ends first leaves
// nothing waiting behind it.
func TestAwaitExitEndsOnClose(t *testing.T) {
	cmd := startSleep(t)
	f, err := openPidfd(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- awaitExit(f) }()
	time.Sleep(50 * time.Millisecond)
	f.Close()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("reported an exit for a process that runs")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting 5 s after the close")
	}
}

// Many waiting sessions hold no threads: the waits are in the poller.
func TestAwaitExitHoldsNoThread(t *testing.T) {
	cmd := startSleep(t)
	threads := func() int {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Skip(err)
		}
		var n int
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(l, "Threads: %d", &n); err == nil {
				return n
			}
		}
		t.Skip("no Threads line")
		return 0
	}
	before := threads()
	var files []*os.File
	for range 200 {
		f, err := openPidfd(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		go awaitExit(f)
	}
	time.Sleep(100 * time.Millisecond)
	after := threads()
	for _, f := range files {
		f.Close()
	}
	if after-before > 20 {
		t.Fatalf("200 waits took %d threads more", after-before)
	}
}
