package ptymodes

import (
	"testing"

	"golang.org/x/sys/unix"
)

func flagsOf(t *unix.Termios, f field) uint32 {
	switch f {
	case iField:
		return t.Iflag
	case oField:
		return t.Oflag
	case cField:
		return t.Cflag
	case lField:
		return t.Lflag
	}
	return 0
}

// Every flag a client sends is set, and cleared, alone.
func TestApplyFlags(t *testing.T) {
	for op, d := range defs {
		if d.field == ccField {
			continue
		}
		var on unix.Termios
		Apply(&on, Modes{{op, 1}})
		if got := flagsOf(&on, d.field); got != d.bit {
			t.Errorf("%s=1 on a clear termios: flags %#x, want %#x", d.name, got, d.bit)
		}
		off := unix.Termios{Iflag: ^uint32(0), Oflag: ^uint32(0), Cflag: ^uint32(0), Lflag: ^uint32(0)}
		Apply(&off, Modes{{op, 0}})
		if got := flagsOf(&off, d.field); got != ^d.bit {
			t.Errorf("%s=0 on a full termios: flags %#x, want %#x", d.name, got, ^d.bit)
		}
		on = unix.Termios{}
		Apply(&on, Modes{{op, 0x100}}) // any nonzero argument sets it
		if flagsOf(&on, d.field) != d.bit {
			t.Errorf("%s=256 did not set it", d.name)
		}
	}
}

func TestApplyControlChars(t *testing.T) {
	for op, d := range defs {
		if d.field != ccField {
			continue
		}
		var tio unix.Termios
		Apply(&tio, Modes{{op, 8}})
		if tio.Cc[d.bit] != 8 {
			t.Errorf("%s=8: c_cc[%d] = %d", d.name, d.bit, tio.Cc[d.bit])
		}
		Apply(&tio, Modes{{op, 255}}) // disabled
		if tio.Cc[d.bit] != 0 {
			t.Errorf("%s=255: c_cc[%d] = %d, want 0 (_POSIX_VDISABLE)", d.name, d.bit, tio.Cc[d.bit])
		}
		Apply(&tio, Modes{{op, 0x17f}}) // a byte, as sshd's cc_t
		if tio.Cc[d.bit] != 0x7f {
			t.Errorf("%s=0x17f: c_cc[%d] = %#x", d.name, d.bit, tio.Cc[d.bit])
		}
	}
	var tio unix.Termios
	Apply(&tio, Modes{{3, 8}, {3, 127}}) // the last one wins
	if tio.Cc[unix.VERASE] != 127 {
		t.Errorf("erase %d, want 127", tio.Cc[unix.VERASE])
	}
}

// Opcodes Linux has no mode for (VDSUSP, VSWTCH, VSTATUS...) and unknown
// ones change nothing.
func TestApplyUnknown(t *testing.T) {
	start := unix.Termios{Iflag: 0x1234, Oflag: 5, Cflag: unix.B38400 | unix.CS8, Lflag: 0x8a3b}
	start.Cc[unix.VERASE] = 127
	for _, op := range []uint8{11, 15, 16, 17, 19, 29, 43, 63, 76, 89, 94, 127, 130, 159} {
		tio := start
		Apply(&tio, Modes{{op, 1}, {op, 0}, {op, 255}})
		if tio != start {
			t.Errorf("opcode %d changed the termios: %+v", op, tio)
		}
	}
}

func TestApplySpeeds(t *testing.T) {
	base := unix.Termios{Cflag: unix.B38400 | unix.CS8 | unix.CREAD}
	for _, tc := range []struct {
		m    Modes
		want uint32
	}{
		{Modes{{opOSpeed, 9600}}, unix.B9600},
		{Modes{{opOSpeed, 115200}}, unix.B115200},
		{Modes{{opOSpeed, 14400}}, unix.B9600}, // unknown rate: sshd's 9600
		{Modes{{opOSpeed, 0}}, unix.B0},
		{Modes{{opOSpeed, 4800}, {opISpeed, 2400}}, unix.B2400}, // one field for both on Linux
		{Modes{{opOSpeed, 4800}, {opISpeed, 0}}, unix.B4800},    // input 0: "as the output"
	} {
		tio := base
		Apply(&tio, tc.m)
		if got := tio.Cflag &^ (unix.CBAUD | unix.CBAUDEX); got != unix.CS8|unix.CREAD {
			t.Errorf("%v changed other c_cflag bits: %#x", tc.m, got)
		}
		if got := tio.Cflag & (unix.CBAUD | unix.CBAUDEX); got != tc.want {
			t.Errorf("%v: speed bits %#x, want %#x", tc.m, got, tc.want)
		}
	}
}

// CS7 and CS8 are bits to sshd, so their order matters.
func TestApplyCharSize(t *testing.T) {
	for _, tc := range []struct {
		m    Modes
		want uint32
	}{
		{Modes{{90, 1}, {91, 1}}, unix.CS8}, // what OpenSSH sends for CS8
		{Modes{{90, 0}, {91, 1}}, unix.CS8},
		{Modes{{91, 1}, {90, 0}}, unix.CS6},
		{Modes{{91, 0}, {90, 1}}, unix.CS7},
		{Modes{{91, 0}}, unix.CS5},
	} {
		tio := unix.Termios{Cflag: unix.CS8}
		Apply(&tio, tc.m)
		if got := tio.Cflag & unix.CSIZE; got != tc.want {
			t.Errorf("%v: CSIZE %#x, want %#x", tc.m, got, tc.want)
		}
	}
}
