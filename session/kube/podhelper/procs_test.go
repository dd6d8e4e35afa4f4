package podhelper

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

const (
	pauseCG  = "12:cpuacct:/kubepods/besteffort/pod1/pause\n0::/\n"
	helperCG = "12:cpuacct:/kubepods/besteffort/pod1/helper\n0::/\n"
	mainCG   = "12:cpuacct:/kubepods/besteffort/pod1/main\n0::/\n"
	debugCG  = "12:cpuacct:/kubepods/besteffort/pod1/debug\n0::/\n"
)

// fakeProc writes a process into a fake /proc.
func fakeProc(t *testing.T, root string, pid int, cg string, state byte, start uint64) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A command name with a space and a parenthesis, as a user may choose.
	stat := fmt.Sprintf("%d (evil) name) %c 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10 0\n", pid, state, start)
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cg), 0o644)
}

// A pod as the helper sees it: pause as PID 1, the helper's own
// processes, the project container's keeper, the user's work (one a
// zombie), and noise in /proc.
func fakePod(t *testing.T) string {
	root := t.TempDir()
	fakeProc(t, root, 1, pauseCG, 'S', 100)
	fakeProc(t, root, 7, helperCG, 'S', 105)  // the sidecar's idle
	fakeProc(t, root, 8, mainCG, 'S', 103)    // sleep infinity: the keeper
	fakeProc(t, root, 20, mainCG, 'S', 500)   // a shell
	fakeProc(t, root, 21, mainCG, 'R', 501)   // nohup job
	fakeProc(t, root, 22, mainCG, 'Z', 502)   // zombie
	fakeProc(t, root, 30, helperCG, 'R', 600) // this helper command
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644)
	return root
}

func TestClassify(t *testing.T) {
	root := fakePod(t)
	keeper, user, err := userProcs(root, 30)
	if err != nil {
		t.Fatal(err)
	}
	if keeper != 8 || !reflect.DeepEqual(user, []int{20, 21}) {
		t.Errorf("keeper %d user %v, want 8 [20 21]", keeper, user)
	}
}

// A debug container added later is not the project's: the project's
// container started first.
func TestClassifyLaterContainer(t *testing.T) {
	root := fakePod(t)
	fakeProc(t, root, 40, debugCG, 'S', 700)
	keeper, user, _ := userProcs(root, 30)
	if keeper != 8 || !reflect.DeepEqual(user, []int{20, 21}) {
		t.Errorf("keeper %d user %v, want 8 [20 21]", keeper, user)
	}
}

// With the project container gone (only pause and the helper left),
// there is no keeper and no work.
func TestClassifyNoProject(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 1, pauseCG, 'S', 100)
	fakeProc(t, root, 30, helperCG, 'R', 600)
	keeper, user, _ := userProcs(root, 30)
	if keeper != 0 || user != nil {
		t.Errorf("keeper %d user %v, want none", keeper, user)
	}
}

func TestParseStatMalformed(t *testing.T) {
	for _, s := range []string{"", "1 (x", "1 (x) S 1 2"} {
		if _, _, err := parseStat([]byte(s)); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

// term signals the user's processes alone, never the keeper, pause or
// the helper, and reports those that outlive the grace.
func TestTerminate(t *testing.T) {
	root := fakePod(t)
	var sent []int
	kill := func(pid int, sig syscall.Signal) error {
		if sig != syscall.SIGTERM {
			t.Errorf("signal %v", sig)
		}
		sent = append(sent, pid)
		if pid == 20 { // the shell ends; the job ignores SIGTERM
			os.RemoveAll(filepath.Join(root, "20"))
		}
		return nil
	}
	left, err := terminate(context.Background(), root, 30, 120*time.Millisecond, kill)
	if err != nil {
		t.Fatal(err)
	}
	if left != 1 || !reflect.DeepEqual(sent, []int{20, 21}) {
		t.Errorf("left %d, signalled %v; want 1, [20 21] once each", left, sent)
	}

	os.RemoveAll(filepath.Join(root, "21"))
	left, err = terminate(context.Background(), root, 30, time.Second, kill)
	if err != nil || left != 0 {
		t.Errorf("with no work: left %d, %v", left, err)
	}
}
