package gateway

import (
	"reflect"
	"strings"
	"testing"
)

// What real rsync clients send (rsync 3.2.7 and 3.5.0, captured with a
// logging remote shell) is accepted and becomes an argv that needs no
// shell; "~" means the workspace, as the user's shell made it.
func TestParseRsyncServerAccepts(t *testing.T) {
	const e = "-logDtpre.iLsfxCIvu"
	for _, tc := range []struct {
		cmd  string
		argv []string // after "rsync --server"
		glob []int    // indexes into argv (of the whole argv) that are patterns
	}{
		{"rsync --server " + e + " . dst/", []string{e, "--", ".", "dst/"}, nil},
		{"rsync --server -logDtprze.iLsfxCIvu --delete --partial . /tmp/h4r/dst/",
			[]string{"-logDtprze.iLsfxCIvu", "--delete", "--partial", "--", ".", "/tmp/h4r/dst/"}, nil},
		{"/usr/bin/rsync --server --sender -vlogDtpre31.14iLsfxCIvu . src/", []string{"--sender", "-vlogDtpre31.14iLsfxCIvu", "--", ".", "src/"}, nil},
		{"rsync --server --sender " + e + " . /data/*.txt", []string{"--sender", e, "--", ".", "/data/*.txt"}, []int{6}},
		{"rsync --server --sender " + e + " . src/t*.txt src/one.txt", []string{"--sender", e, "--", ".", "src/t*.txt", "src/one.txt"}, []int{6}},
		{`rsync --server ` + e + ` . dir\ with\ space/\$x`, []string{e, "--", ".", "dir with space/$x"}, nil},
		{"rsync --server " + e + ` . ~/x\ y\$\(id\)\` + "`z\\`" + `\;.txt`, []string{e, "--", ".", "/workspace/x y$(id)`z`;.txt"}, nil},
		{"rsync --server " + e + " . ~", []string{e, "--", ".", "/workspace"}, nil},
		{"rsync --server --sender " + e + ` . \~`, []string{"--sender", e, "--", ".", "~"}, nil},
		{"rsync --server " + e + " . ./-x", []string{e, "--", ".", "./-x"}, nil},
		{"rsync --server " + e + ` . a\*b`, []string{e, "--", ".", "a*b"}, nil},
		// A quoted wildcard in a pattern stays literal: bracketed.
		{"rsync --server --sender " + e + ` . a\*b* 'c?'[0-9]`, []string{"--sender", e, "--", ".", "a[*]b*", "c[?][0-9]"}, []int{6, 7}},
		{"rsync --server --sender " + e + ` . ~/data/*.csv`, []string{"--sender", e, "--", ".", "/workspace/data/*.csv"}, []int{6}},
		{"rsync --server -lHogDtpAXrSe.iLsfxCIvu --compress-level=3 --delay-updates --numeric-ids --remove-source-files --mkpath . dd/",
			[]string{"-lHogDtpAXrSe.iLsfxCIvu", "--compress-level=3", "--delay-updates", "--numeric-ids", "--remove-source-files", "--mkpath", "--", ".", "dd/"}, nil},
		{"rsync --server -vvlogDtprbe.iLsfxCIvu --backup-dir ~/bak --suffix=~ --partial-dir .p --temp-dir /tmp --timeout=30 --bwlimit=100 --checksum-choice=md5 --max-size=1M --log-format=%i --info=progress2 -B1024 -@-1 --files-from=- --from0 . d",
			[]string{"-vvlogDtprbe.iLsfxCIvu", "--backup-dir", "/workspace/bak", "--suffix=~", "--partial-dir", ".p", "--temp-dir", "/tmp", "--timeout=30", "--bwlimit=100",
				"--checksum-choice=md5", "--max-size=1M", "--log-format=%i", "--info=progress2", "-B1024", "-@-1", "--files-from=-", "--from0", "--", ".", "d"}, nil},
		{"rsync --server --sender -logDtpr . ''", []string{"--sender", "-logDtpr", "--", ".", ""}, nil},
		{"rsync --server -logDtprb --backup-dir . . d", []string{"-logDtprb", "--backup-dir", ".", "--", ".", "d"}, nil},
		{`rsync --server -l . "a \"b\" \$c"`, []string{"-l", "--", ".", `a "b" $c`}, nil},
	} {
		cmd, err := parseRsyncServer(tc.cmd)
		if err != nil {
			t.Errorf("%s: refused: %v", tc.cmd, err)
			continue
		}
		want := append([]string{"rsync", "--server"}, tc.argv...)
		if !reflect.DeepEqual(cmd.Argv, want) {
			t.Errorf("%s:\n got argv %q\nwant %q", tc.cmd, cmd.Argv, want)
		}
		var glob []int
		for i, g := range cmd.Glob {
			if g {
				glob = append(glob, i)
			}
		}
		if !reflect.DeepEqual(glob, tc.glob) {
			t.Errorf("%s: patterns at %v, want %v", tc.cmd, glob, tc.glob)
		}
	}
}

// Anything else is refused, with a reason: shell syntax, options a client
// never sends a server, other programs.
func TestParseRsyncServerRefuses(t *testing.T) {
	const e = "-logDtpre.iLsfxCIvu"
	for _, tc := range []struct{ cmd, why string }{
		{"rsync --server; id", `shell character ';'`},
		{"rsync --server " + e + " . x; id", `shell character ';'`},
		{"rsync --server " + e + " . x && id", `shell character '&'`},
		{"rsync --server " + e + " . x | id", `shell character '|'`},
		{"rsync --server " + e + " . $(id)", `shell character '$'`},
		{"rsync --server " + e + " . `id`", "shell character '`'"},
		{"rsync --server " + e + ` . "$(id)"`, `'$' in double quotes`},
		{"rsync --server " + e + " . \"`id`\"", "'`' in double quotes"},
		{"rsync --server " + e + " . x\nid", `control character '\n'`},
		{"rsync --server " + e + " . 'x\ny'", `control character '\n'`},
		{"rsync --server " + e + " . x\ty", `control character '\t'`},
		{"rsync --server " + e + " . x >/tmp/y", `shell character '>'`},
		{"rsync --server " + e + " . {a,b}", `shell character '{'`},
		{"rsync --server " + e + " . #x", `shell character '#'`},
		{"rsync --server --daemon . x", `option "--daemon" is not allowed`},
		{"rsync --server --daemon --config=/etc/rsyncd.conf .", `option "--daemon" is not allowed`},
		{"rsync --server --config=/x . x", `option "--config=/x" is not allowed`},
		{"rsync --server --rsh=sh . x", `option "--rsh=sh" is not allowed`},
		{"rsync --server -e sh . x", `option "-e" is not allowed`},
		{"rsync --server --rsync-path=/x . x", `is not allowed`},
		{"rsync --server --log-file=/workspace/l . x", `is not allowed`},
		{"rsync --server --log-format=%f . x", `is not allowed`},
		{"rsync --server --write-batch=x . x", `is not allowed`},
		{"rsync --server -- . x", `option "--" is not allowed`},
		{"rsync --server -slogDtpre.iLsfxCIvu . x", "--secluded-args"},
		{"rsync --server --protect-args . x", "--secluded-args"},
		{"rsync --server -logDtpre.iLsfxCIvu -M--foo . x", `is not allowed`},
		{"rsync --server --timeout=abc . x", "--timeout: want a number"},
		{"rsync --server --files-from=evil:list . x", "names another host"},
		{"rsync --server --files-from evil:list . x", "names another host"},
		{"rsync --server --backup-dir a* . x", `wildcards only in file names`},
		{"rsync --server -l --backup-dir", "needs a value"},
		{"rsync --server --backup-dir . x", "after the options"},
		{"rsync --server ~/x . y", `unquoted ~ or wildcard`},
		{"rsync --server " + e + " . ~root/x", "only ~ and ~/"},
		{"rsync --server " + e + ` . a*\\b`, "backslash"},
		{"rsync --server " + e + " x", "after the options"},
		{"rsync --server " + e + " .", "after the options"},
		{"rsync --server " + e + " . 'x", "unterminated '"},
		{"rsync --server " + e + ` . "x`, `unterminated "`},
		{"rsync --server " + e + ` . x\`, "ends with a backslash"},
		{"bin/rsync --server " + e + " . x", "is not rsync"},
		{"rsync* --server " + e + " . x", "is not rsync"},
		{"rsync --serverx " + e + " . x", "want --server"},
		{"rsync --server", "after the options"},
		{"rsync", "incomplete"},
		// What rsync -s sends: the real arguments would follow on stdin.
		{"rsync --server -slogDtpre.iLsfxCIvu", "--secluded-args"},
	} {
		cmd, err := parseRsyncServer(tc.cmd)
		if err == nil {
			t.Errorf("%q: accepted as %q", tc.cmd, cmd.Argv)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: refused with %q, want it to say %q", tc.cmd, err, tc.why)
		}
	}
}

func TestIsRsyncServer(t *testing.T) {
	for cmd, want := range map[string]bool{
		"rsync --server -logDtpr . x": true,
		"/usr/bin/rsync --server . x": true,
		"rsync --server; id":          true, // refused later, never run elsewhere
		"rsync --server$(id)":         true,
		"  rsync   --server . x":      true,
		"rsync -a src/ dst/":          false, // the user's own rsync, in their container
		"cd x && rsync --server . y":  false,
		"echo rsync --server":         false,
		"rsync":                       false,
		"":                            false,
	} {
		if got := isRsyncServer(cmd); got != want {
			t.Errorf("isRsyncServer(%q) = %v, want %v", cmd, got, want)
		}
	}
}
