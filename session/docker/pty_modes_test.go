package docker

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-gateway/session/ptymodes"
)

// hostPty opens a pty pair of the test's own.
func hostPty(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	peer, _, err := newPty(master, os.Getuid())
	if err != nil {
		t.Skipf("pty peer: %v", err)
	}
	t.Cleanup(func() { peer.Close() })
	return peer
}

// ptyModes are modes a client might send: erase ^H, no echo, IUTF8, and
// parity on, which a pty refuses (it keeps CS8 without parity).
var ptyModes = ptymodes.Modes{{Op: 3, Arg: 8}, {Op: 53, Arg: 0}, {Op: 42, Arg: 1}, {Op: 92, Arg: 1}}

// The gateway's own pty gets the client's modes on top of a new
// terminal's settings.
func TestSetModes(t *testing.T) {
	peer := hostPty(t)
	if err := setModes(peer, ptyModes); err != nil {
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(peer.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Cc[unix.VERASE] != 8 || tio.Lflag&unix.ECHO != 0 || tio.Iflag&unix.IUTF8 == 0 {
		t.Errorf("erase %d, echo %v, iutf8 %v", tio.Cc[unix.VERASE], tio.Lflag&unix.ECHO != 0, tio.Iflag&unix.IUTF8 != 0)
	}
	if tio.Lflag&unix.ICANON == 0 || tio.Oflag&unix.ONLCR == 0 {
		t.Error("modes the client did not send changed")
	}
}

// On the engine's terminal the modes and size are set by stty from inside;
// the command's arguments pass through untouched, and a stty that refuses
// a word still leaves the size set.
func TestEngineTTYCmd(t *testing.T) {
	if got := engineTTYCmd([]string{"sh", "-l"}, 0, 0, nil); !reflect.DeepEqual(got, []string{"sh", "-l"}) {
		t.Errorf("no size, no modes: %q", got)
	}
	evil := []string{"$(touch pwned)", "a b", "*", `'"\`}
	run := func(rows, cols uint32, modes ptymodes.Modes) string {
		t.Helper()
		peer := hostPty(t)
		argv := engineTTYCmd(append([]string{"sh", "-c", `stty -a; printf '[%s]' "$@"`, "sh"}, evil...), rows, cols, modes)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = t.TempDir()
		cmd.Stdin = peer
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if _, err := os.Stat(cmd.Dir + "/pwned"); err == nil {
			t.Fatal("the shell ran an argument")
		}
		return string(out)
	}
	out := run(33, 111, ptyModes)
	for _, want := range []string{"rows 33; columns 111", "erase = ^H", "-echo ", " iutf8", "[$(touch pwned)][a b][*]['\"\\]"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in %q", want, out)
		}
	}
	out = run(0, 0, ptymodes.Modes{{Op: 53, Arg: 0}})
	if !strings.Contains(out, "-echo ") {
		t.Errorf("modes without a size: %q", out)
	}
	out = run(33, 111, nil)
	if !strings.Contains(out, "rows 33; columns 111") || strings.Contains(out, "-echo ") {
		t.Errorf("a size without modes: %q", out)
	}
}
