package authkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func pubLine(t *testing.T) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk))), gossh.FingerprintSHA256(pk)
}

func TestParseOptions(t *testing.T) {
	key, fp := pubLine(t)
	for _, tc := range []struct {
		opts    string
		want    Options
		refused string
	}{
		{opts: "", want: Options{}},
		{opts: "restrict", want: Options{NoPortForwarding: true, NoAgentForwarding: true, NoPty: true, NoX11Forwarding: true}},
		{opts: "restrict,pty", want: Options{NoPortForwarding: true, NoAgentForwarding: true, NoX11Forwarding: true}},
		{opts: "restrict,port-forwarding,agent-forwarding", want: Options{NoPty: true, NoX11Forwarding: true}},
		{opts: "no-port-forwarding,No-Agent-Forwarding", want: Options{NoPortForwarding: true, NoAgentForwarding: true}},
		{opts: "no-pty,no-X11-forwarding,no-user-rc", want: Options{NoPty: true, NoX11Forwarding: true}},
		{opts: `from="10.0.0.0/8,!10.1.2.3"`, want: Options{From: []string{"10.0.0.0/8", "!10.1.2.3"}}},
		{opts: `expiry-time="20300102Z"`, want: Options{Expiry: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)}},
		{opts: `expiry-time="203001021530"`, want: Options{Expiry: time.Date(2030, 1, 2, 15, 30, 0, 0, time.UTC)}},
		{opts: `command="/bin/true"`, refused: "command is not supported"},
		{opts: `environment="A=b"`, refused: "environment is not supported"},
		{opts: `principals="x"`, refused: "principals is not supported"},
		{opts: `tunnel="1"`, refused: "tunnel is not supported"},
		{opts: `permitopen="localhost:80"`, refused: "permitopen is not supported"},
		{opts: `permitlisten="8080"`, refused: "permitlisten is not supported"},
		{opts: "cert-authority", refused: "cert-authority is not supported"},
		{opts: "no-touch-required", refused: "no-touch-required is not supported"},
		{opts: "frobnicate", refused: "frobnicate is not supported"},
		{opts: `restrict="1"`, refused: "takes no value"},
		{opts: `from="10.0.0.1/8"`, refused: "bad address/prefix"},
		{opts: `from="300.0.0.0/8"`, refused: "bad address/prefix"},
		{opts: `expiry-time="tomorrow"`, refused: "want YYYYMMDD"},
	} {
		line := key + " laptop"
		if tc.opts != "" {
			line = tc.opts + " " + line
		}
		e, err := ParseLine(line, time.UTC)
		if tc.refused != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), fp) {
				t.Errorf("%q: want refusal naming the key and %q, got %v", tc.opts, tc.refused, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.opts, err)
			continue
		}
		if e.Fingerprint != fp || e.Comment != "laptop" {
			t.Errorf("%q: fingerprint %s comment %q", tc.opts, e.Fingerprint, e.Comment)
		}
		if strings.Join(e.Options.From, ",") != strings.Join(tc.want.From, ",") || e.Options.NoPty != tc.want.NoPty ||
			e.Options.NoPortForwarding != tc.want.NoPortForwarding || e.Options.NoAgentForwarding != tc.want.NoAgentForwarding ||
			e.Options.NoX11Forwarding != tc.want.NoX11Forwarding || !e.Options.Expiry.Equal(tc.want.Expiry) {
			t.Errorf("%q: got %+v, want %+v", tc.opts, e.Options, tc.want)
		}
	}
}

func TestParseKeepsGoodLines(t *testing.T) {
	k1, fp1 := pubLine(t)
	k2, fp2 := pubLine(t)
	data := "# my keys\n\n" + k1 + " a\ngarbage here\ncommand=\"x\" " + k2 + " forced\n" + k2 + " b\n"
	es, problems := Parse([]byte(data), time.UTC)
	if len(es) != 2 || es[0].Fingerprint != fp1 || es[1].Fingerprint != fp2 {
		t.Fatalf("entries: %+v", es)
	}
	if len(problems) != 2 || !strings.HasPrefix(problems[0], "line 4:") || !strings.HasPrefix(problems[1], "line 5:") {
		t.Fatalf("problems: %q", problems)
	}
}

func TestMatchFrom(t *testing.T) {
	for _, tc := range []struct {
		pats   string
		remote string
		want   bool
	}{
		{"10.0.0.0/8", "10.1.2.3", true},
		{"10.0.0.0/8", "192.168.0.1", false},
		{"10.0.0.0/8,!10.1.2.3", "10.1.2.3", false},
		{"!10.1.2.3,10.0.0.0/8", "10.1.2.4", true},
		{"192.168.1.*", "192.168.1.77", true},
		{"192.168.1.?", "192.168.1.77", false},
		{"192.168.1.7?", "192.168.1.77", true},
		{"127.0.0.1", "::ffff:127.0.0.1", true},
		{"::1", "::1", true},
		{"2001:db8::/32", "2001:db8::5", true},
		{"!192.168.0.0/16", "10.0.0.1", false}, // a negation alone allows nothing
		{"*", "203.0.113.9", true},
		{"host.example.com", "203.0.113.9", false}, // UseDNS no: names never match
	} {
		got, err := MatchFrom(strings.Split(tc.pats, ","), netip.MustParseAddr(tc.remote))
		if err != nil || got != tc.want {
			t.Errorf("from=%q remote %s: got %v, %v; want %v", tc.pats, tc.remote, got, err, tc.want)
		}
	}
}

func TestOptionsCheck(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := Options{From: []string{"10.0.0.0/8"}, Expiry: now.Add(time.Hour)}
	if err := o.Check(netip.MustParseAddr("10.0.0.1"), now); err != nil {
		t.Errorf("allowed: %v", err)
	}
	if err := o.Check(netip.MustParseAddr("192.0.2.1"), now); err == nil || !strings.Contains(err.Error(), "does not match from=") {
		t.Errorf("from mismatch: %v", err)
	}
	if err := o.Check(netip.MustParseAddr("10.0.0.1"), now.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
}

// home builds home/.ssh/authorized_keys owned by uid with sshd's modes.
func home(t *testing.T, uid int, content string) string {
	t.Helper()
	h := filepath.Join(t.TempDir(), "home")
	must(t, os.MkdirAll(filepath.Join(h, ".ssh"), 0o700))
	must(t, os.WriteFile(filepath.Join(h, ".ssh", "authorized_keys"), []byte(content), 0o600))
	for _, p := range []string{h, filepath.Join(h, ".ssh"), filepath.Join(h, ".ssh", "authorized_keys")} {
		must(t, os.Lchown(p, uid, uid))
	}
	must(t, os.Chmod(h, 0o755))
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown test files to other uids")
	}
	const uid = 27590
	key, _ := pubLine(t)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, h string)
		want   string // "" is readable
	}{
		{"good", func(*testing.T, string) {}, ""},
		{"root-owned file", func(t *testing.T, h string) { must(t, os.Chown(filepath.Join(h, ".ssh/authorized_keys"), 0, 0)) }, ""},
		{"group-writable file", func(t *testing.T, h string) { must(t, os.Chmod(filepath.Join(h, ".ssh/authorized_keys"), 0o620)) }, "writable by group or others (mode 0620)"},
		{"world-writable .ssh", func(t *testing.T, h string) { must(t, os.Chmod(filepath.Join(h, ".ssh"), 0o707)) }, ".ssh is writable by group or others"},
		{"group-writable home", func(t *testing.T, h string) { must(t, os.Chmod(h, 0o775)) }, "home is writable by group or others"},
		{"file of another user", func(t *testing.T, h string) {
			must(t, os.Chown(filepath.Join(h, ".ssh/authorized_keys"), uid+1, uid+1))
		}, "owned by uid 27591"},
		{"home of another user", func(t *testing.T, h string) { must(t, os.Chown(h, uid+1, uid+1)) }, "owned by uid 27591"},
		{"symlinked file", func(t *testing.T, h string) {
			f := filepath.Join(h, ".ssh/authorized_keys")
			must(t, os.Rename(f, filepath.Join(h, "elsewhere")))
			must(t, os.Symlink(filepath.Join(h, "elsewhere"), f))
		}, "authorized_keys is a symlink"},
		{"symlinked .ssh", func(t *testing.T, h string) {
			must(t, os.Rename(filepath.Join(h, ".ssh"), filepath.Join(h, "dot-ssh")))
			must(t, os.Symlink("dot-ssh", filepath.Join(h, ".ssh")))
		}, ".ssh is a symlink"},
		{"fifo", func(t *testing.T, h string) {
			f := filepath.Join(h, ".ssh/authorized_keys")
			must(t, os.Remove(f))
			must(t, syscall.Mkfifo(f, 0o600))
			must(t, os.Chown(f, uid, uid))
		}, "not a regular file"},
		{"huge", func(t *testing.T, h string) {
			must(t, os.WriteFile(filepath.Join(h, ".ssh/authorized_keys"), make([]byte, MaxFileSize+1), 0o600))
		}, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := home(t, uid, key+"\n")
			tc.change(t, h)
			data, err := Read(h, uid)
			if tc.want == "" {
				if err != nil || string(data) != key+"\n" {
					t.Fatalf("want the file, got %q, %v", data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("want ErrUnsafe: %v", err)
			}
		})
	}
	if _, err := Read(filepath.Join(t.TempDir(), "nohome"), uid); err == nil || errors.Is(err, ErrUnsafe) {
		t.Errorf("missing home: want a plain error, got %v", err)
	}
}
