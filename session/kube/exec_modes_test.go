package kube

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-gateway/session/ptymodes"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// The exec wrapper sets the client's terminal modes and size on the
// terminal it runs on, as the pod's sh would.
func TestExecWrapperTerminalModes(t *testing.T) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	defer unix.Close(mfd)
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		t.Skipf("TIOCGPTPEER: %v", errno)
	}
	peer := os.NewFile(r, "pts")
	defer peer.Close()
	spec := runtime.ExecSpec{
		Cmd: []string{"stty", "-a"}, Tty: true, Rows: 33, Cols: 111,
		Modes: ptymodes.Modes{{Op: 53, Arg: 0}, {Op: 3, Arg: 8}, {Op: 92, Arg: 1}}, // parity: refused by a pty
	}
	argv := execArgv(spec, "tok")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = peer
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"rows 33; columns 111", "erase = ^H", "-echo "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("want %q in %q", want, out)
		}
	}
}
