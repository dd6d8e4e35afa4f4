package ptymodes

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSttyArgs(t *testing.T) {
	m := Modes{
		{opOSpeed, 38400}, {opISpeed, 0}, {opISpeed, 14400}, {1, 3}, {3, 8}, {5, 255}, {18, 15}, {13, 127}, {2, 200},
		{53, 0}, {42, 1}, {72, 1}, {11, 1}, {99, 1}, {90, 1}, {91, 1}, {92, 0},
	}
	want := []string{"ospeed", "38400", "ispeed", "9600", "intr", "^C", "erase", "^H", "eof", "undef", "werase", "^?", "quit", "200",
		"-echo", "iutf8", "onlcr", "-parenb", "cs8"}
	if got := SttyArgs(m); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := SttyArgs(Modes{{91, 1}, {90, 0}}); !reflect.DeepEqual(got, []string{"cs6"}) {
		t.Errorf("CS8=1 CS7=0: %q, want cs6 as sshd's bits give", got)
	}
	if got := SttyArgs(nil); len(got) != 0 {
		t.Errorf("no modes: %q", got)
	}
}

// Whatever a client sends, the words are harmless to a shell that splits
// them on spaces with globbing off.
func TestSttyArgsAlphabet(t *testing.T) {
	var m Modes
	for op := 1; op < 160; op++ {
		for _, v := range []uint32{0, 1, 8, 31, 32, 39, 92, 127, 128, 200, 255, 256, 0xffffffff} {
			m = append(m, Mode{uint8(op), v})
		}
	}
	for _, w := range SttyArgs(m) {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz0123456789-^?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]_") != "" {
			t.Errorf("word %q", w)
		}
	}
}

// openPty opens a pty pair here, for stty to work on.
func openPty(t *testing.T) *os.File {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	t.Cleanup(func() { unix.Close(mfd) })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		t.Skipf("TIOCGPTPEER: %v", errno)
	}
	peer := os.NewFile(r, "pts")
	t.Cleanup(func() { peer.Close() })
	return peer
}

// The words make the stty of Debian (GNU) and of BusyBox set a terminal
// as Apply sets it, all but discard and pendin, which they leave out.
func TestSttyArgsMatchApply(t *testing.T) {
	// Every flag the other way round from a new terminal's, and chosen
	// characters and speeds.
	fresh := termiosOf(t, openPty(t))
	m := Modes{{opOSpeed, 9600}, {opISpeed, 9600}, {1, 3}, {3, 8}, {4, 21}, {5, 255}, {13, 127}, {14, 200}, {10, 26}}
	for op, d := range defs {
		// A pty keeps CS8 and no parity whatever it is told (Linux's
		// pty_set_termios), and stty then fails its check.
		if d.field != ccField && d.field != cField && sttyKnows(d.name) {
			if flagsOf(&fresh, d.field)&d.bit != 0 {
				m = append(m, Mode{op, 0})
			} else {
				m = append(m, Mode{op, 1})
			}
		}
	}
	for _, stty := range [][]string{{"stty"}, {"busybox", "stty"}} {
		t.Run(stty[0], func(t *testing.T) {
			if _, err := exec.LookPath(stty[0]); err != nil {
				t.Skipf("no %s here", stty[0])
			}
			peer := openPty(t)
			want := termiosOf(t, peer)
			Apply(&want, m)
			cmd := exec.Command(stty[0], append(stty[1:], SttyArgs(m)...)...)
			cmd.Stdin = peer
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s %q: %v: %s", stty, SttyArgs(m), err, out)
			}
			got := termiosOf(t, peer)
			got.Cc[unix.VDISCARD] = want.Cc[unix.VDISCARD]
			if got != want {
				t.Errorf("after stty:\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

func termiosOf(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

func TestSttyWords(t *testing.T) {
	for _, tc := range []struct {
		rows, cols uint32
		m          Modes
		w, f       string
	}{
		{0, 0, nil, "", ""},
		{24, 80, nil, "rows 24 cols 80", "rows 24 cols 80"},
		{24, 0, Modes{{53, 0}}, "-echo", ""},
		{24, 80, Modes{{53, 0}, {3, 8}}, "rows 24 cols 80 -echo erase ^H", "rows 24 cols 80"},
	} {
		if w, f := SttyWords(tc.rows, tc.cols, tc.m); w != tc.w || f != tc.f {
			t.Errorf("SttyWords(%d, %d, %v) = %q, %q; want %q, %q", tc.rows, tc.cols, tc.m, w, f, tc.w, tc.f)
		}
	}
}
