package gateway

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/ds01/ds01-gateway/session"
)

// rsync over ssh execs "rsync --server [options] . PATHS" on the far side,
// through the user's shell there. The gateway has no shell in that path:
// it splits the command line as a POSIX shell would, accepts exactly what
// rsync's client sends a server (options.c, server_options()), and runs
// rsync with the resulting argv. What a shell would still have done is
// done here too, and only that: "~" and "~/x" mean the workspace, and a
// file name's unquoted wildcards are expanded in the container.

// isRsyncServer says whether a command is meant for rsync's server side.
// It is deliberately loose: everything it accepts goes through
// parseRsyncServer, which refuses whatever is not a plain rsync server,
// so "rsync --server; id" is refused rather than run in the project
// container.
func isRsyncServer(command string) bool {
	f := strings.Fields(command)
	return len(f) >= 2 && path.Base(f[0]) == "rsync" && strings.HasPrefix(f[1], "--server")
}

// errSecluded names the one option a real client may send that cannot be
// served: with -s the real arguments follow on stdin, out of our sight.
var errSecluded = errors.New("--secluded-args (-s, --protect-args) is not supported here: leave it out (rsync 3.2.4 and later protect file names without it)")

// rsyncCluster is the bundle of one-letter options server_options()
// sends (-vlogDtpr...), then the "-e" protocol flags (e.iLsfxCIvu or
// e31.14iLsfxCIvu), whose letters are not options.
var rsyncCluster = regexp.MustCompile(`^-([svqbunldKmOJyLkWHogDtUNpEAXrcCIRxSz]*)(e(?:[0-9]+\.[0-9]+|\.)[A-Za-z]*)?$`)

// rsyncFlags are the long options without a value a client sends.
var rsyncFlags = map[string]bool{
	"--sender": true, "--delete": true, "--delete-before": true, "--delete-during": true,
	"--delete-delay": true, "--delete-after": true, "--delete-excluded": true,
	"--delete-missing-args": true, "--ignore-missing-args": true, "--force": true,
	"--partial": true, "--delay-updates": true, "--inplace": true, "--append": true,
	"--no-W": true, "--numeric-ids": true, "--ignore-errors": true, "--ignore-existing": true,
	"--existing": true, "--copy-unsafe-links": true, "--safe-links": true, "--size-only": true,
	"--stats": true, "--remove-source-files": true, "--remove-sent-files": true, "--mkpath": true,
	"--list-only": true, "--no-r": true, "--specials": true, "--no-specials": true,
	"--msgs2stderr": true, "--no-msgs2stderr": true, "--fsync": true, "--preallocate": true,
	"--open-noatime": true, "--use-qsort": true, "--from0": true, "--no-relative": true,
	"--no-implied-dirs": true, "--new-compress": true, "--old-compress": true, "--super": true,
	"--write-devices": true, "--copy-devices": true, "--only-write-batch=X": true,
	"--log-format=%i%I": true, "--log-format=%i": true, "--log-format=%o": true, "--log-format=X": true,
}

// rsyncNumeric are the long options with an integer value.
var rsyncNumeric = map[string]bool{
	"--timeout": true, "--bwlimit": true, "--compress-level": true, "--max-delete": true,
	"--checksum-seed": true, "--modify-window": true,
}

// rsyncValued are the long options with a free value, always "--opt=v".
var rsyncValued = map[string]bool{
	"--suffix": true, "--checksum-choice": true, "--compress-choice": true,
	"--skip-compress": true, "--min-size": true, "--max-size": true, "--max-alloc": true,
	"--usermap": true, "--groupmap": true, "--iconv": true, "--info": true, "--debug": true,
}

// rsyncPathValued are the options whose value is a path, sent as a word
// of its own (so the remote shell expands "~/") or as "--opt=path".
var rsyncPathValued = map[string]bool{
	"--backup-dir": true, "--partial-dir": true, "--temp-dir": true, "--compare-dest": true,
	"--copy-dest": true, "--link-dest": true, "--files-from": true,
}

var (
	rsyncInt      = regexp.MustCompile(`^-?[0-9]{1,10}$`)
	rsyncBlock    = regexp.MustCompile(`^-B[0-9]{1,10}$`)
	rsyncModifyAt = regexp.MustCompile(`^-@-?[0-9]{1,10}$`)
)

// parseRsyncServer turns an rsync server command line into the argv to
// exec, or says why it is refused.
func parseRsyncServer(command string) (session.TransferCommand, error) {
	words, err := splitShellWords(command)
	if err != nil {
		return session.TransferCommand{}, err
	}
	if len(words) < 2 {
		return session.TransferCommand{}, errors.New("incomplete rsync server command")
	}
	if w := words[0]; w.special() || !isRsyncPath(w.text) {
		return session.TransferCommand{}, fmt.Errorf("%q is not rsync", w.text)
	}
	if words[1].text != "--server" || words[1].special() {
		return session.TransferCommand{}, fmt.Errorf("want --server, got %q", words[1].text)
	}
	// The container's own rsync runs, whatever path the client named:
	// "--rsync-path=/workspace/x/rsync" must not pick a user's binary.
	cmd := session.TransferCommand{Argv: []string{"rsync", "--server"}}
	i := 2
	for ; i < len(words) && words[i].text != "."; i++ {
		w := words[i]
		if w.special() {
			return session.TransferCommand{}, fmt.Errorf("option %q: unquoted ~ or wildcard", w.text)
		}
		if !strings.HasPrefix(w.text, "-") {
			return session.TransferCommand{}, fmt.Errorf(`want ". PATH..." after the options, got %q`, w.text)
		}
		opt, _, _ := strings.Cut(w.text, "=")
		switch {
		case rsyncPathValued[opt] && opt == w.text:
			// "--backup-dir" "~/bak": the value is the next word.
			i++
			if i >= len(words) {
				return session.TransferCommand{}, fmt.Errorf("option %s needs a value", opt)
			}
			v, err := words[i].literalPath()
			if err != nil {
				return session.TransferCommand{}, fmt.Errorf("option %s: %w", opt, err)
			}
			if err := checkPathOption(opt, v); err != nil {
				return session.TransferCommand{}, err
			}
			cmd.Argv = append(cmd.Argv, opt, v)
			continue
		case rsyncPathValued[opt]:
			if err := checkPathOption(opt, strings.TrimPrefix(w.text, opt+"=")); err != nil {
				return session.TransferCommand{}, err
			}
		case rsyncFlags[w.text], rsyncBlock.MatchString(w.text), rsyncModifyAt.MatchString(w.text):
		case rsyncNumeric[opt] && opt != w.text:
			if !rsyncInt.MatchString(w.text[len(opt)+1:]) {
				return session.TransferCommand{}, fmt.Errorf("option %s: want a number", opt)
			}
		case rsyncValued[opt] && opt != w.text:
		case w.text == "--protect-args" || w.text == "--secluded-args":
			return session.TransferCommand{}, errSecluded
		default:
			m := rsyncCluster.FindStringSubmatch(w.text)
			if m == nil || w.text == "-" {
				return session.TransferCommand{}, fmt.Errorf("option %q is not allowed here", w.text)
			}
			if strings.Contains(m[1], "s") {
				return session.TransferCommand{}, errSecluded
			}
		}
		cmd.Argv = append(cmd.Argv, w.text)
	}
	if i >= len(words)-1 {
		return session.TransferCommand{}, errors.New(`want ". PATH..." after the options`)
	}
	// Everything after "." is a file name, even one starting with "-":
	// "--" makes sure rsync sees it so, and so does a pattern's match.
	cmd.Argv = append(cmd.Argv, "--", ".")
	cmd.Glob = make([]bool, len(cmd.Argv), len(words)+2)
	for _, w := range words[i+1:] {
		arg, glob, err := w.pathArg()
		if err != nil {
			return session.TransferCommand{}, err
		}
		cmd.Argv = append(cmd.Argv, arg)
		cmd.Glob = append(cmd.Glob, glob)
	}
	return cmd, nil
}

// isRsyncPath accepts "rsync" and an absolute path to it, as clients name
// it (--rsync-path=/usr/bin/rsync).
func isRsyncPath(p string) bool {
	return p == "rsync" || strings.HasPrefix(p, "/") && path.Base(p) == "rsync"
}

// checkPathOption refuses a --files-from on another host: the server
// would connect there with a remote shell.
func checkPathOption(opt, v string) error {
	if opt == "--files-from" && v != "-" {
		if host, _, ok := strings.Cut(v, ":"); ok && !strings.Contains(host, "/") {
			return fmt.Errorf("option --files-from: %q names another host", v)
		}
	}
	return nil
}

// shellWord is one word of a command line as a POSIX shell splits it, with
// what the shell would still do to it.
type shellWord struct {
	text string
	// wild marks the bytes of text that are unquoted *, ? or [: the
	// shell would expand the word as a file name pattern.
	wild []bool
	// tilde is set when the word starts with an unquoted ~.
	tilde bool
}

// special says whether a shell would expand the word.
func (w shellWord) special() bool { return w.tilde || slices.Contains(w.wild, true) }

// literalPath is the word with "~" expanded, for values that are paths but
// not patterns.
func (w shellWord) literalPath() (string, error) {
	if slices.Contains(w.wild, true) {
		return "", fmt.Errorf("%q: wildcards only in file names", w.text)
	}
	return w.expandTilde()
}

// expandTilde maps "~" and "~/x" to the workspace, the transfer
// container's HOME, as the user's shell did.
func (w shellWord) expandTilde() (string, error) {
	if !w.tilde {
		return w.text, nil
	}
	if w.text == "~" || strings.HasPrefix(w.text, "~/") {
		return session.TransferHome + w.text[1:], nil
	}
	return "", fmt.Errorf("%q: only ~ and ~/ are understood (they mean %s)", w.text, session.TransferHome)
}

// pathArg is a file name argument as rsync gets it, and whether it is a
// pattern for the container to expand. In a pattern, the characters that
// were quoted are bracketed ([*]), which a shell's pattern matching reads
// as themselves.
func (w shellWord) pathArg() (string, bool, error) {
	text, err := w.expandTilde()
	if err != nil || !slices.Contains(w.wild, true) {
		return text, false, err
	}
	var b strings.Builder
	j := 0
	if w.tilde {
		b.WriteString(session.TransferHome)
		j = 1
	}
	for ; j < len(w.text); j++ {
		c := w.text[j]
		switch {
		case w.wild[j]:
			b.WriteByte(c)
		case c == '*' || c == '?' || c == '[':
			b.WriteString("[" + string(c) + "]")
		case c == '\\':
			// A shell's pattern matching has no portable escape for it.
			return "", false, fmt.Errorf("%q: a pattern with a backslash is not supported", w.text)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true, nil
}

// shellMeta are the characters that, unquoted, make a shell do more than
// split words: rsync's client always escapes them in what it sends.
const shellMeta = ";&|<>()$`#!{}"

// splitShellWords splits a command line as a POSIX shell would, and
// refuses anything that would make the shell do more than that, or expand
// something other than ~ and file name patterns. Control characters are
// refused everywhere, quoted or not.
func splitShellWords(s string) ([]shellWord, error) {
	var words []shellWord
	inWord := false
	// begin starts a word unless one is open: quotes do too, so '' is an
	// (empty) word.
	begin := func() *shellWord {
		if !inWord {
			words = append(words, shellWord{})
			inWord = true
		}
		return &words[len(words)-1]
	}
	add := func(c byte, wild bool) {
		w := begin()
		w.text += string(c)
		w.wild = append(w.wild, wild)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return nil, fmt.Errorf("control character %q in the command", c)
		}
		switch {
		case c == ' ':
			inWord = false
		case c == '\\':
			i++
			if i == len(s) {
				return nil, errors.New("the command ends with a backslash")
			}
			if s[i] < 0x20 || s[i] == 0x7f {
				return nil, fmt.Errorf("control character %q in the command", s[i])
			}
			add(s[i], false)
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' in the command")
			}
			begin()
			for _, q := range []byte(s[i+1 : i+1+j]) {
				if q < 0x20 || q == 0x7f {
					return nil, fmt.Errorf("control character %q in the command", q)
				}
				add(q, false)
			}
			i += j + 1
		case c == '"':
			begin()
			for i++; i < len(s) && s[i] != '"'; i++ {
				q := s[i]
				switch {
				case q < 0x20 || q == 0x7f:
					return nil, fmt.Errorf("control character %q in the command", q)
				case q == '$' || q == '`':
					return nil, fmt.Errorf("%q in double quotes would be expanded: quote it with '' or \\", q)
				case q == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
					i++
					q = s[i]
				}
				add(q, false)
			}
			if i == len(s) {
				return nil, errors.New(`unterminated " in the command`)
			}
		case strings.IndexByte(shellMeta, c) >= 0:
			return nil, fmt.Errorf("shell character %q in the command: quote it", c)
		default:
			first := !inWord
			add(c, c == '*' || c == '?' || c == '[')
			if first && c == '~' {
				words[len(words)-1].tilde = true
			}
		}
	}
	return words, nil
}
