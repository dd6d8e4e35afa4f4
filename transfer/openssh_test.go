package transfer

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests drive the real OpenSSH clients against the child, without
// sshd: `sftp -D` runs a local server command, and `scp -S` runs a stand-in
// for ssh that starts the child as sshd would run the remote command.

// fakeSSH is what scp runs as "ssh": it skips ssh's options, then serves
// the sftp subsystem (-s) or shell-splits the remote command (legacy
// scp -O) and runs the child with it.
const fakeSSH = `#!/bin/sh
sub=
while [ $# -gt 0 ]; do
	case "$1" in
	-s) sub=1; shift ;;
	-l|-p|-o|-i|-F|-J|-c|-m|-b) shift 2 ;;
	--) shift; break ;;
	-*) shift ;;
	*) break ;;
	esac
done
shift # the host
if [ -n "$sub" ]; then
	exec "$SELF" transfer sftp --mount "/workspace=$WS"
fi
# Split the command as the remote shell would, ~ being the workspace.
HOME=/workspace
eval "set -- $*"
shift # "scp"
exec "$SELF" transfer scp --mount "/workspace=$WS" -- "$@"
`

type openssh struct {
	self, ws, local, ssh string
}

func newOpenSSH(t *testing.T) openssh {
	t.Helper()
	for _, b := range []string{"sftp", "scp"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("no %s client", b)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	o := openssh{self: self, ws: filepath.Join(base, "ws"), local: filepath.Join(base, "local"), ssh: filepath.Join(base, "ssh")}
	os.Mkdir(o.ws, 0o755)
	os.Mkdir(o.local, 0o755)
	os.WriteFile(o.ssh, []byte(fakeSSH), 0o755)
	return o
}

func (o openssh) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = o.local
	// Under -race a child would otherwise linger a second at exit.
	cmd.Env = append(os.Environ(), "SELF="+o.self, "WS="+o.ws, "GORACE=atexit_sleep_ms=0", rootChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestOpenSSHSFTP(t *testing.T) {
	o := newOpenSSH(t)
	data := make([]byte, 5<<20+1)
	rand.Read(data)
	os.WriteFile(filepath.Join(o.local, "src.bin"), data, 0o755)
	os.WriteFile(filepath.Join(o.ws, "part.bin"), data[:1<<20], 0o644)
	batch := strings.Join([]string{
		"pwd",
		"mkdir d",
		"put src.bin d/copy.bin",
		"rename d/copy.bin d/moved.bin",
		"chmod 600 d/moved.bin",
		"get d/moved.bin back.bin",
		"reput src.bin part.bin",
		"ln -s moved.bin d/link",
		"ls -l d",
		"ls -n /",
		"df",
		"-get /etc/passwd stolen",
		"-get ../../../etc/passwd stolen",
		"-put src.bin /x",
		"rm d/link",
		"cd d",
		"pwd",
	}, "\n")
	cmd := exec.Command("sftp", "-b", "-", "-D", o.self+" transfer sftp --mount /workspace="+o.ws, "x")
	cmd.Dir = o.local
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0", rootChildEnv+"=1")
	cmd.Stdin = strings.NewReader(batch)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Remote working directory: /workspace\n",
		"Remote working directory: /workspace/d\n",
		"moved.bin",
		"workspace",
		"Size",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(o.local, "back.bin")); !bytes.Equal(b, data) {
		t.Error("get returned different data")
	}
	if b, _ := os.ReadFile(filepath.Join(o.ws, "part.bin")); !bytes.Equal(b, data) {
		t.Error("reput did not complete the file")
	}
	if _, err := os.Stat(filepath.Join(o.local, "stolen")); err == nil {
		t.Error("got /etc/passwd")
	}
	// put sends the local mode: an executable stays executable.
	if fi, err := os.Stat(filepath.Join(o.ws, "d", "moved.bin")); err != nil || fi.Mode() != 0o600 {
		t.Errorf("moved.bin: %v %v", fi, err)
	}
}

func TestOpenSSHSCP(t *testing.T) {
	for _, mode := range []struct{ name, flag, quote string }{{"sftp", "-s", ""}, {"legacy", "-O", "'"}} {
		t.Run(mode.name, func(t *testing.T) {
			o := newOpenSSH(t)
			tree := filepath.Join(o.local, "my dir")
			os.MkdirAll(filepath.Join(tree, "in ner"), 0o750)
			os.WriteFile(filepath.Join(tree, "a b.sh"), []byte("#!/bin/sh\n"), 0o755)
			os.WriteFile(filepath.Join(tree, "in ner", "f"), []byte("deep"), 0o600)
			flags := []string{"-S", o.ssh, "-q"}
			if mode.flag == "-O" {
				flags = append(flags, "-O")
			}
			scp := func(args ...string) {
				t.Helper()
				if out, err := o.run(t, "scp", append(flags, args...)...); err != nil {
					t.Fatalf("scp %q: %v\n%s", args, err, out)
				}
			}
			scp("-r", "-p", "my dir", "x:")
			scp("my dir/a b.sh", "x:renamed.sh")
			os.Mkdir(filepath.Join(o.ws, "sub"), 0o755)
			scp("my dir/in ner/f", "x:sub/")
			for name, want := range map[string]string{
				"my dir/a b.sh": "#!/bin/sh\n", "my dir/in ner/f": "deep", "renamed.sh": "#!/bin/sh\n", "sub/f": "deep",
			} {
				p := filepath.Join(o.ws, name)
				if b, err := os.ReadFile(p); err != nil || string(b) != want {
					t.Errorf("%s = %q, %v", name, b, err)
				}
			}
			if fi, err := os.Stat(filepath.Join(o.ws, "my dir", "a b.sh")); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("a b.sh: %v %v", fi, err)
			}
			src, _ := os.Stat(filepath.Join(tree, "in ner", "f"))
			if fi, err := os.Stat(filepath.Join(o.ws, "my dir", "in ner", "f")); err != nil || !fi.ModTime().Equal(src.ModTime().Truncate(1e9)) {
				t.Errorf("-p lost the mtime: %v %v", fi, err)
			}

			// Legacy scp leaves quoting remote sources to the user (the
			// remote shell would split them); SFTP mode takes them as given.
			scp("-r", "x:"+mode.quote+"my dir"+mode.quote, "back")
			scp("x:~/renamed.sh", "x:/workspace/sub/f", ".")
			for name, want := range map[string]string{"back/a b.sh": "#!/bin/sh\n", "back/in ner/f": "deep", "renamed.sh": "#!/bin/sh\n", "f": "deep"} {
				if b, err := os.ReadFile(filepath.Join(o.local, name)); err != nil || string(b) != want {
					t.Errorf("local %s = %q, %v", name, b, err)
				}
			}
			if out, err := o.run(t, "scp", append(flags, "x:/etc/passwd", "stolen")...); err == nil {
				t.Errorf("scp of /etc/passwd succeeded: %s", out)
			}
			if _, err := os.Stat(filepath.Join(o.local, "stolen")); err == nil {
				t.Error("got /etc/passwd")
			}
		})
	}
}
