package ptymodes

import "golang.org/x/sys/unix"

// field is the part of a termios a mode sets.
type field uint8

const (
	ccField field = iota + 1 // a control character: bit is its c_cc index
	iField
	oField
	cField
	lField
)

// modeDef is what one opcode means on Linux, and stty(1)'s name for it.
type modeDef struct {
	field field
	bit   uint32
	name  string
}

// defs are the opcodes OpenSSH's ttymodes.h maps where glibc defines the
// constant: VDSUSP (11), VFLUSH (15), VSWTCH (16; Linux has VSWTC, which
// sshd does not map) and VSTATUS (17) do not exist on Linux and, as in
// sshd, are skipped like unknown opcodes.
var defs = map[uint8]modeDef{
	1:  {ccField, unix.VINTR, "intr"},
	2:  {ccField, unix.VQUIT, "quit"},
	3:  {ccField, unix.VERASE, "erase"},
	4:  {ccField, unix.VKILL, "kill"},
	5:  {ccField, unix.VEOF, "eof"},
	6:  {ccField, unix.VEOL, "eol"},
	7:  {ccField, unix.VEOL2, "eol2"},
	8:  {ccField, unix.VSTART, "start"},
	9:  {ccField, unix.VSTOP, "stop"},
	10: {ccField, unix.VSUSP, "susp"},
	12: {ccField, unix.VREPRINT, "rprnt"},
	13: {ccField, unix.VWERASE, "werase"},
	14: {ccField, unix.VLNEXT, "lnext"},
	18: {ccField, unix.VDISCARD, "discard"},

	30: {iField, unix.IGNPAR, "ignpar"},
	31: {iField, unix.PARMRK, "parmrk"},
	32: {iField, unix.INPCK, "inpck"},
	33: {iField, unix.ISTRIP, "istrip"},
	34: {iField, unix.INLCR, "inlcr"},
	35: {iField, unix.IGNCR, "igncr"},
	36: {iField, unix.ICRNL, "icrnl"},
	37: {iField, unix.IUCLC, "iuclc"},
	38: {iField, unix.IXON, "ixon"},
	39: {iField, unix.IXANY, "ixany"},
	40: {iField, unix.IXOFF, "ixoff"},
	41: {iField, unix.IMAXBEL, "imaxbel"},
	42: {iField, unix.IUTF8, "iutf8"}, // RFC 8160

	50: {lField, unix.ISIG, "isig"},
	51: {lField, unix.ICANON, "icanon"},
	52: {lField, unix.XCASE, "xcase"},
	53: {lField, unix.ECHO, "echo"},
	54: {lField, unix.ECHOE, "echoe"},
	55: {lField, unix.ECHOK, "echok"},
	56: {lField, unix.ECHONL, "echonl"},
	57: {lField, unix.NOFLSH, "noflsh"},
	58: {lField, unix.TOSTOP, "tostop"},
	59: {lField, unix.IEXTEN, "iexten"},
	60: {lField, unix.ECHOCTL, "echoctl"},
	61: {lField, unix.ECHOKE, "echoke"},
	62: {lField, unix.PENDIN, "pendin"},

	70: {oField, unix.OPOST, "opost"},
	71: {oField, unix.OLCUC, "olcuc"},
	72: {oField, unix.ONLCR, "onlcr"},
	73: {oField, unix.OCRNL, "ocrnl"},
	74: {oField, unix.ONOCR, "onocr"},
	75: {oField, unix.ONLRET, "onlret"},

	// CS7 and CS8 are values of the CSIZE field, yet sshd sets and
	// clears them as bits: CS7=0 then CS8=1 gives CS8, CS8=1 then CS7=0
	// gives CS6. Done the same way here, so that a session is what it
	// would be under sshd.
	90: {cField, unix.CS7, "cs7"},
	91: {cField, unix.CS8, "cs8"},
	92: {cField, unix.PARENB, "parenb"},
	93: {cField, unix.PARODD, "parodd"},
}

// Apply sets t as sshd's tty_parse_modes would: each known mode in turn,
// unknown opcodes skipped, speeds as glibc's cfsetispeed and cfsetospeed
// set them.
func Apply(t *unix.Termios, m Modes) {
	for _, md := range m {
		switch md.Op {
		case opISpeed:
			// glibc keeps an input speed of 0 ("as the output") to itself.
			if s := baudToSpeed(md.Arg); s != unix.B0 {
				setSpeed(t, s)
			}
			continue
		case opOSpeed:
			setSpeed(t, baudToSpeed(md.Arg))
			continue
		}
		d, ok := defs[md.Op]
		if !ok {
			continue
		}
		var flags *uint32
		switch d.field {
		case ccField:
			t.Cc[d.bit] = specialChar(md.Arg)
			continue
		case iField:
			flags = &t.Iflag
		case oField:
			flags = &t.Oflag
		case cField:
			flags = &t.Cflag
		case lField:
			flags = &t.Lflag
		}
		if md.Arg != 0 {
			*flags |= d.bit
		} else {
			*flags &^= d.bit
		}
	}
}

// setSpeed puts speed in the c_cflag baud bits, which on Linux hold both
// the input and the output speed of a terminal set with TCSETS.
func setSpeed(t *unix.Termios, speed uint32) {
	t.Cflag &^= unix.CBAUD | unix.CBAUDEX
	t.Cflag |= speed
}

// specialChar is a control character's value: 255 disables it, as
// _POSIX_VDISABLE (0 on Linux) does.
func specialChar(v uint32) uint8 {
	if v == 255 {
		return 0
	}
	return uint8(v) //nolint:gosec // cc_t is a byte: sshd truncates too
}

// bauds are the rates sshd's baud_to_speed knows on Linux.
var bauds = map[uint32]uint32{
	0: unix.B0, 50: unix.B50, 75: unix.B75, 110: unix.B110, 134: unix.B134, 150: unix.B150,
	200: unix.B200, 300: unix.B300, 600: unix.B600, 1200: unix.B1200, 1800: unix.B1800,
	2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400,
	57600: unix.B57600, 115200: unix.B115200, 230400: unix.B230400,
}

// baudToSpeed is sshd's: an unknown rate is 9600.
func baudToSpeed(baud uint32) uint32 {
	if s, ok := bauds[baud]; ok {
		return s
	}
	return unix.B9600
}
