package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The user commands share the store with a running gateway: a new key
// works on the next login, a removed user is refused on the next one.
func TestUserCommandsWhileServing(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "uma", 20121, 20121)
	const proj = "keys"
	cli := func(args ...string) (string, error) {
		out, err := exec.Command(gatewayBin, append(args, "--config", g.cfgPath)...).CombinedOutput()
		return string(out), err
	}

	laptop, laptopPub := newKey(t, t.TempDir(), "laptop")
	if r := runSSH(t, timeoutShort, nil, append(g.sshArgs(laptop, proj), "true")...); r.code != 255 {
		t.Fatalf("a key not yet added must be refused: %s", r)
	}
	if out, err := cli("user", "key", "add", "uma", "--key-file", laptopPub); err != nil {
		t.Fatalf("user key add: %v\n%s", err, out)
	}
	if r := runSSH(t, timeoutLong, nil, append(g.sshArgs(laptop, proj), "id -u")...); r.code != 0 || r.stdout != "20121\n" {
		t.Fatalf("login with the added key: %s", r)
	}

	out, err := cli("user", "list")
	if err != nil || !strings.Contains(out, "uma") || !strings.Contains(out, "20121") {
		t.Errorf("user list: %v\n%s", err, out)
	}
	// A key belongs to one user only.
	if out, err := cli("user", "add", "other", "--uid", "20122", "--key-file", laptopPub); err == nil {
		t.Errorf("a key registered twice was accepted:\n%s", out)
	}
	// Bad input is refused with a clear error and exit 1 or 2.
	for _, args := range [][]string{
		{"user", "add", "Bad Name", "--uid", "20123", "--key-file", laptopPub},
		{"user", "add", "nokey", "--uid", "20124"},
		{"user", "add", "badkey", "--uid", "20125", "--key-file", g.cfgPath},
	} {
		if out, err := cli(args...); err == nil {
			t.Errorf("%v accepted:\n%s", args, out)
		}
	}

	if out, err := cli("user", "remove", "uma"); err != nil {
		t.Fatalf("user remove: %v\n%s", err, out)
	}
	for _, key := range []string{u.key, laptop} {
		if r := runSSH(t, timeoutShort, nil, append(g.sshArgs(key, proj), "true")...); r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("removed user's key %s: want Permission denied, got %s", key, r)
		}
	}
}
