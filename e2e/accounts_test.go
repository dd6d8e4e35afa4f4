package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Host accounts mode and self-service keys use uids and gids 27500-27599.
const accountsGroup, accountsGID = "ds01e2egpu", 27580

// hostAccount creates a real host account (useradd) with its home in a
// temporary directory and the given authorized_keys lines, removed when
// the test ends. It returns the home.
func hostAccount(t *testing.T, g *gw, name string, uid int, inGroup bool, lines ...string) string {
	t.Helper()
	exec.Command("userdel", name).Run() // a leftover of an interrupted run
	exec.Command("groupdel", name).Run()
	home := filepath.Join(t.TempDir(), name)
	args := []string{"-u", strconv.Itoa(uid), "-U", "-d", home, "-M", "-s", "/bin/sh"}
	if inGroup {
		args = append(args, "-G", accountsGroup)
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		exec.Command("userdel", name).Run()
		exec.Command("groupdel", name).Run()
	})
	if g != nil {
		g.mu.Lock()
		g.uids = append(g.uids, uid)
		g.mu.Unlock()
	}
	removeUserArtifacts(t, uid)
	ssh := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(ssh, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ssh, "authorized_keys"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o755)
	for _, p := range []string{home, ssh, filepath.Join(ssh, "authorized_keys")} {
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

func pubLine(t *testing.T, pub string) string {
	t.Helper()
	b, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func accountsGroupFor(t *testing.T) {
	t.Helper()
	exec.Command("groupdel", accountsGroup).Run()
	if out, err := exec.Command("groupadd", "-g", strconv.Itoa(accountsGID), accountsGroup).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", accountsGroup).Run() })
}

// Host accounts mode: a host user logs in by their own authorized_keys
// and lands in their project's container as their uid; unsafe files,
// from= mismatches and users outside allowed_groups are refused, with a
// line in the gateway's log saying why; restrict takes forwarding away
// but leaves the session.
func TestHostAccounts(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	accountsGroupFor(t)
	dir := t.TempDir()
	key := map[string]string{}
	line := map[string]string{}
	for _, n := range []string{"hana", "hugo", "holly", "hank", "hera", "herar"} {
		priv, pub := newKey(t, dir, n)
		key[n], line[n] = priv, pubLine(t, pub)
	}
	hana := hostAccount(t, nil, "ds01hana", 27501, true, line["hana"])
	hostAccount(t, nil, "ds01hugo", 27502, false, line["hugo"])
	holly := hostAccount(t, nil, "ds01holly", 27503, true, line["holly"])
	os.Chmod(filepath.Join(holly, ".ssh", "authorized_keys"), 0o664)
	hank := hostAccount(t, nil, "ds01hank", 27504, true, line["hank"])
	real := filepath.Join(hank, "keys")
	os.Rename(filepath.Join(hank, ".ssh", "authorized_keys"), real)
	os.Symlink(real, filepath.Join(hank, ".ssh", "authorized_keys"))
	hostAccount(t, nil, "ds01hera", 27505, true, `from="10.9.9.0/24" `+line["hera"], "restrict "+line["herar"])

	g := startGateway(t, gwOpts{Extra: map[string]string{"users_from": "host", "allowed_groups": "[" + accountsGroup + "]"}})
	g.mu.Lock()
	g.uids = append(g.uids, 27501, 27505)
	g.mu.Unlock()

	r := runSSH(t, timeoutLong, nil, append(g.sshArgs(key["hana"], "thesis"), "id -u; id -g; id -un; pwd")...)
	if r.code != 0 || r.stdout != "27501\n27501\nds01hana\n/workspace\n" {
		t.Fatalf("host user's login: %s", r)
	}
	if out, err := exec.Command(gatewayBin, "user", "list", "--config", g.cfgPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "ds01hana") || !strings.Contains(string(out), "27501") {
		t.Errorf("the host user is not recorded in the store: %v\n%s", err, out)
	}

	for _, tc := range []struct{ who, log string }{
		{"hugo", ""}, // not in allowed_groups: not a candidate at all
		{"holly", "user=ds01holly"},
		{"hank", "user=ds01hank"},
		{"hera", "does not match from="},
	} {
		r := runSSH(t, timeoutShort, nil, append(g.sshArgs(key[tc.who], "thesis"), "true")...)
		if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("%s: want Permission denied, got %s", tc.who, r)
		}
	}
	out := g.out.String()
	for _, want := range []string{
		"ds01holly/.ssh/authorized_keys is writable by group or others (mode 0664)",
		"ds01hank/.ssh/authorized_keys is a symlink",
		`msg="key refused" remote=127.0.0.1`,
		`does not match from=`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("gateway log lacks %q", want)
		}
	}

	// restrict: no forwarding, but the session runs.
	r = runSSH(t, timeoutShort, nil, g.sshArgs(key["herar"], "thesis", "-W", "127.0.0.1:22")...)
	if r.code != 255 || !strings.Contains(g.out.String(), "forward refused: no-port-forwarding for this key") {
		t.Errorf("restrict key's -W: %s", r)
	}
	r = runSSH(t, timeoutLong, nil, append(g.sshArgs(key["herar"], "thesis"), "id -u")...)
	if r.code != 0 || r.stdout != "27505\n" {
		t.Errorf("restrict key's session: %s", r)
	}

	// key-list reads the file; key-add points to it.
	r = runSSH(t, timeoutShort, nil, append(g.sshArgs(key["herar"], "ds01"), "key-list")...)
	if r.code != 0 || !strings.Contains(r.stdout, "no-pty") || !strings.Contains(r.stdout, `from="10.9.9.0/24"`) {
		t.Errorf("host key-list: %s", r)
	}
	r = runSSH(t, timeoutShort, strings.NewReader(line["hugo"]+"\n"), append(g.sshArgs(key["hana"], "ds01"), "key-add")...)
	if r.code != 1 || !strings.Contains(r.stderr, "~/.ssh/authorized_keys on the host") {
		t.Errorf("host key-add: %s", r)
	}

	// A key the user appends to their file works without a restart: an
	// unknown key starts a rescan (at most one per 10 s).
	newPriv, newPub := newKey(t, dir, "hana-new")
	f, err := os.OpenFile(filepath.Join(hana, ".ssh", "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, pubLine(t, newPub))
	f.Close()
	deadline := time.Now().Add(25 * time.Second)
	for {
		r = runSSH(t, timeoutShort, nil, append(g.sshArgs(newPriv, "ds01"), "key-list")...)
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if r.code != 0 || !strings.HasPrefix(lineWith(r.stdout, "hana-new"), "*") {
		t.Errorf("a key appended to authorized_keys: %s", r)
	}
}

// Self-service keys: key-add registers a key that logs in; the older key
// hears of it once at its next login; key-remove never removes the last
// key nor someone else's.
func TestSelfServiceKeys(t *testing.T) {
	g := startGateway(t, gwOpts{})
	kira := g.addUser(t, "kira", 27520, 27520)
	other := g.addUser(t, "otto", 27521, 27521)
	newPriv, newPub := newKey(t, t.TempDir(), "kira-new")
	fp := strings.Fields(runTool(t, timeoutShort, "", nil, "ssh-keygen", "-lf", newPub).stdout)[1]
	oldFP := strings.Fields(runTool(t, timeoutShort, "", nil, "ssh-keygen", "-lf", kira.pub).stdout)[1]
	cmd := func(key string, stdin string, args ...string) sshResult {
		t.Helper()
		var in *strings.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		if in == nil {
			return runSSH(t, timeoutShort, nil, append(g.sshArgs(key, "ds01"), args...)...)
		}
		return runSSH(t, timeoutShort, in, append(g.sshArgs(key, "ds01"), args...)...)
	}

	if r := cmd(kira.key, pubLine(t, newPub)+"\n", "key-add"); r.code != 0 || !strings.Contains(r.stderr, "key "+fp+" (ssh-ed25519) added") {
		t.Fatalf("key-add: %s", r)
	}
	r := cmd(newPriv, "", "key-list")
	if r.code != 0 || !strings.HasPrefix(lineWith(r.stdout, fp), "*") || !strings.Contains(lineWith(r.stdout, fp), "key-add from 127.0.0.1") {
		t.Fatalf("the new key's key-list: %s", r)
	}
	if strings.Contains(r.stderr, "was added on") {
		t.Errorf("the new key itself was told of itself: %s", r)
	}
	today := time.Now().UTC().Format("Jan 2")
	r = cmd(kira.key, "", "key-list")
	want := fmt.Sprintf("ds01: a new key %s was added on %s", fp, today)
	if r.code != 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "from 127.0.0.1; if that was not you: ssh ds01@") || !strings.Contains(r.stderr, "key-remove "+fp) {
		t.Errorf("the old key's next login: want %q, got %s", want, r)
	}
	if r := cmd(kira.key, "", "key-list"); strings.Contains(r.stderr, "was added on") {
		t.Errorf("the notice came twice: %s", r)
	}

	// A key of someone else's: refused without naming them; their key
	// cannot be removed either.
	if r := cmd(kira.key, pubLine(t, other.pub)+"\n", "key-add"); r.code != 1 || !strings.Contains(r.stderr, "already registered") || strings.Contains(r.stderr, "otto") {
		t.Errorf("key-add of another user's key: %s", r)
	}
	otherFP := strings.Fields(runTool(t, timeoutShort, "", nil, "ssh-keygen", "-lf", other.pub).stdout)[1]
	if r := cmd(kira.key, "", "key-remove", otherFP); r.code != 1 || !strings.Contains(r.stderr, "you have no key") {
		t.Errorf("removing another user's key: %s", r)
	}
	if r := cmd(other.key, "", "key-list"); r.code != 0 || !strings.Contains(r.stdout, otherFP) {
		t.Errorf("otto's key after kira's attempt: %s", r)
	}

	// Remove the old key from the new one; the last key stays.
	if r := cmd(newPriv, "", "key-remove", oldFP); r.code != 0 || !strings.Contains(r.stderr, "removed") {
		t.Fatalf("key-remove: %s", r)
	}
	if r := cmd(kira.key, "", "key-list"); r.code != 255 {
		t.Errorf("the removed key still logs in: %s", r)
	}
	if r := cmd(newPriv, "", "key-remove", fp); r.code != 1 || !strings.Contains(r.stderr, "is your only key: add another first") {
		t.Errorf("removing the last key: %s", r)
	}
	if r := cmd(newPriv, "", "key-list"); r.code != 0 {
		t.Errorf("the last key after the refused removal: %s", r)
	}
}

// lineWith is the first line of out that contains s.
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
