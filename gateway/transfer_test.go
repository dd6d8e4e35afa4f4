package gateway

import (
	"reflect"
	"testing"
)

func TestTransferKind(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		kind string
		args []string
	}{
		{"scp -t .", "scp", []string{"-t", "."}},
		{"scp -v -r -p -t -- 'my dir/'", "scp", []string{"-v", "-r", "-p", "-t", "--", "my dir/"}},
		{`scp -f my\ file "b c"`, "scp", []string{"-f", "my file", "b c"}},
		{"/usr/bin/scp -f x", "scp", []string{"-f", "x"}},
		{"scp -pt dir", "scp", []string{"-pt", "dir"}},
		{"rsync --server -vlogDtpre.iLsfxCIvu . dst/", "rsync", nil},
		{"rsync --server; id", "rsync", nil}, // refused by the rsync path, never run
		// Not transfers: these run in the project container as usual.
		{"scp other:x .", "", nil},
		{"scp -- -t", "", nil},
		{"rsync -a src/ dst/", "", nil},
		{"ls -t", "", nil},
		{"scp", "", nil},
		{"", "", nil},
		{`scp -t "unterminated`, "", nil},
	} {
		kind, args := transferKind(tc.cmd)
		if kind != tc.kind || (tc.kind == "scp" && !reflect.DeepEqual(args, tc.args)) {
			t.Errorf("transferKind(%q) = %q %q, want %q %q", tc.cmd, kind, args, tc.kind, tc.args)
		}
	}
}
