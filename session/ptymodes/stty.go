package ptymodes

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SttyArgs are stty(1) words that give a terminal the gateway cannot reach
// with an ioctl (one a container engine made) what Apply gives one it
// holds. They are made from numbers and fixed names only, never from text
// a client sent, and hold no space, quote or shell operator: characters
// from a-z, 0-9 and "-^?@[\]_" alone.
//
// The stty of GNU and of BusyBox take every word. They cannot set PENDIN,
// nor does BusyBox's know "discard": both are left out (no program of
// today relies on either). A stty refuses all of its words when it
// refuses one, so a caller retries without them.
func SttyArgs(m Modes) []string {
	var w []string
	csize, sawCS := uint32(unix.CS8), false // a new terminal's CSIZE
	for _, md := range m {
		switch md.Op {
		case opISpeed:
			if md.Arg != 0 { // glibc's input speed 0 changes nothing
				w = append(w, "ispeed", strconv.FormatUint(uint64(baudOf(md.Arg)), 10))
			}
			continue
		case opOSpeed:
			w = append(w, "ospeed", strconv.FormatUint(uint64(baudOf(md.Arg)), 10))
			continue
		}
		d, ok := defs[md.Op]
		switch {
		case !ok || !sttyKnows(d.name):
		case d.field == ccField:
			w = append(w, d.name, ccWord(specialChar(md.Arg)))
		case d.field == cField && (d.bit == unix.CS7 || d.bit == unix.CS8):
			// "-cs8" is no stty word: follow sshd's bits, name the result.
			if md.Arg != 0 {
				csize |= d.bit
			} else {
				csize &^= d.bit
			}
			sawCS = true
		case md.Arg != 0:
			w = append(w, d.name)
		default:
			w = append(w, "-"+d.name)
		}
	}
	if sawCS {
		w = append(w, map[uint32]string{unix.CS5: "cs5", unix.CS6: "cs6", unix.CS7: "cs7", unix.CS8: "cs8"}[csize])
	}
	return w
}

// SttyShell is a line of sh that sets a terminal from inside: stty with
// the words of $w, then with those of $f alone when a stty refuses one of
// $w (a BusyBox one, or a pty keeping CS8 without parity: stty checks
// what it set); nothing when $w is empty. Splitting the words on spaces
// with globbing off is safe: see SttyArgs.
const SttyShell = `if [ -n "$w" ]; then IFS=' '; set -f; stty $w 2>/dev/null || { [ -z "$f" ] || stty $f 2>/dev/null; }; set +f; unset IFS; fi`

// SttyWords are SttyShell's $w and $f for a terminal given modes, and
// sized rows by cols unless either is 0.
func SttyWords(rows, cols uint32, m Modes) (w, f string) {
	if rows > 0 && cols > 0 {
		f = "rows " + strconv.FormatUint(uint64(rows), 10) + " cols " + strconv.FormatUint(uint64(cols), 10)
	}
	w = strings.Join(append([]string{f}, SttyArgs(m)...), " ")
	return strings.TrimSpace(w), f
}

// baudOf is the rate sshd would set for baud: itself if known, else 9600.
func baudOf(baud uint32) uint32 {
	if _, ok := bauds[baud]; ok {
		return baud
	}
	return 9600
}

// ccWord writes control character c as both GNU's and BusyBox's stty
// read it: a lone digit would be taken as that character, so values
// below 32 and DEL go as ^X, and the rest as decimal numbers of two or
// three digits.
func ccWord(c uint8) string {
	switch {
	case c == 0:
		return "undef"
	case c < 32:
		return "^" + string(rune('@'+c))
	case c == 127:
		return "^?"
	}
	return strconv.Itoa(int(c))
}

// sttyKnows reports whether GNU's and BusyBox's stty both set name.
func sttyKnows(name string) bool { return name != "discard" && name != "pendin" }
