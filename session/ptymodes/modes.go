// Package ptymodes decodes the terminal modes an SSH client sends with its
// "pty-req" (RFC 4254 section 8) and applies them to a Linux terminal the
// way OpenSSH's sshd does (ttymodes.c, tty_parse_modes): the client's
// erase key, echo, IUTF8 and the rest then hold inside the session as
// they do on the client's own terminal.
package ptymodes

import (
	"encoding/binary"
	"fmt"
)

// Opcodes with a meaning of their own in the encoding (RFC 4254 8).
const (
	opEnd    = 0   // TTY_OP_END: the list ends
	opISpeed = 128 // TTY_OP_ISPEED: input baud rate
	opOSpeed = 129 // TTY_OP_OSPEED: output baud rate
	// Opcodes from 160 on are undefined and stop parsing: their argument,
	// if any, has no known size.
	opFirstUndefined = 160
)

// Mode is one encoded terminal mode: an opcode and its argument.
type Mode struct {
	Op  uint8
	Arg uint32
}

// Modes are a client's terminal modes in the order it sent them; later
// ones override earlier ones, as in sshd.
type Modes []Mode

// Parse decodes the encoded terminal modes of a "pty-req". Like sshd it
// stops at TTY_OP_END or at an opcode of 160 or more, keeps opcodes it may
// not know (Apply skips those), and accepts a list without TTY_OP_END.
// Input that sshd would not apply (an argument cut short, bytes after
// the end) is an error: the caller then ignores the modes altogether, as
// sshd does.
func Parse(b []byte) (Modes, error) {
	var m Modes
	for i := 0; i < len(b); {
		op := b[i]
		i++
		if op == opEnd || op >= opFirstUndefined {
			if rest := len(b) - i; rest > 0 {
				return nil, fmt.Errorf("terminal modes: %d bytes after the end", rest)
			}
			break
		}
		if len(b)-i < 4 {
			return nil, fmt.Errorf("terminal modes: opcode %d: argument cut short", op)
		}
		m = append(m, Mode{Op: op, Arg: binary.BigEndian.Uint32(b[i:])})
		i += 4
	}
	return m, nil
}
