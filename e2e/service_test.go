package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shutdownNotice is the start of the line every open session hears when
// the gateway stops (gateway.ShutdownNotice).
const shutdownNotice = "ds01: the gateway is restarting; your container and what runs in it keep running"

// exited waits up to timeout for the gateway process to end and returns
// its exit code, or -1.
func (g *gw) exited(timeout time.Duration) int {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// SIGTERM with a user logged in and a job running detached: the session
// is told and may finish, the gateway exits 0, the container and the job
// keep running, and the next start puts the user back into that container.
// A second SIGTERM does not wait for sessions.
func TestServiceGracefulShutdown(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOpts{RetireAfter: "3s", Lifecycle: lifecycleBlock(), Extra: map[string]string{"shutdown_timeout": "60s"}})
	u := g.addUser(t, "sia", 27301, 27301)
	const proj = "thesis"
	out := g.mustSSH(t, u, proj, `nohup sleep 600 >/dev/null 2>&1 & echo "job=$! host=$(hostname)"`)
	var job, host string
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "job="); ok {
			job = v
		}
		if v, ok := strings.CutPrefix(f, "host="); ok {
			host = v
		}
	}
	if job == "" || host == "" {
		t.Fatalf("start a job: %q", out)
	}
	before := containers(t, u.uid, proj)
	if len(before) != 1 {
		t.Fatalf("want 1 container, have %v", before)
	}
	open := g.startSSH(t, u, proj, "echo up; cat >/dev/null")
	open.waitOutput(t, "up", timeoutShort)

	g.signal(t, syscall.SIGTERM)
	open.waitErr(t, shutdownNotice, 10*time.Second)
	if _, err := runSSHErr(g, u, proj); err == nil {
		t.Error("a new connection was accepted during the shutdown")
	}
	if code := g.exited(time.Second); code != -1 {
		t.Fatalf("gateway exited (%d) while a session was open, before shutdown_timeout", code)
	}
	// The user logs out, as the notice suggests: the gateway stops.
	open.stop()
	if code := g.exited(10 * time.Second); code != 0 {
		t.Fatalf("gateway exit code %d after its last session ended, want 0", code)
	}
	if got := containers(t, u.uid, proj); len(got) != 1 || got[0] != before[0] {
		t.Fatalf("after the shutdown: containers %v, want %v still running", got, before)
	}
	if strings.Contains(g.out.String(), "container retired") {
		t.Errorf("a container was retired during the shutdown:\n%s", lastLines(g.out.String(), 40))
	}

	g.start(t)
	if out := g.mustSSH(t, u, proj, `echo "host=$(hostname)"; kill -0 `+job+` && echo job-alive`); !strings.Contains(out, "host="+host) || !strings.Contains(out, "job-alive") {
		t.Errorf("after the restart: %q, want host=%s and the job alive", out, host)
	}
	if got := containers(t, u.uid, proj); len(got) != 1 || got[0] != before[0] {
		t.Errorf("after the restart: containers %v, want the adopted %v", got, before)
	}

	// A second SIGTERM exits at once, sessions open or not.
	open = g.startSSH(t, u, proj, "echo up; cat >/dev/null")
	open.waitOutput(t, "up", timeoutShort)
	g.signal(t, syscall.SIGTERM)
	open.waitErr(t, shutdownNotice, 10*time.Second)
	start := time.Now()
	g.signal(t, syscall.SIGTERM)
	if code := g.exited(10 * time.Second); code == -1 {
		t.Fatal("gateway still running 10s after a second SIGTERM")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second SIGTERM: exited after %s, want at once", d)
	}
	if got := containers(t, u.uid, proj); len(got) != 1 || got[0] != before[0] {
		t.Errorf("after a second SIGTERM: containers %v, want %v still running", got, before)
	}
}

// runSSHErr tries a login that should fail fast; err is set when it
// could not connect or log in.
func runSSHErr(g *gw, u *user, login string) (string, error) {
	r, err := execTool(15*time.Second, "", nil, "ssh", append(g.sshArgs(u.key, login), "true")...)
	if err != nil {
		return "", err
	}
	if r.code != 0 {
		return r.stderr, errFailed
	}
	return r.stdout, nil
}

var errFailed = errors.New("login failed")

// SIGHUP re-reads the limits file: a request refused under the old file
// is granted under the new one; a broken file changes nothing and is
// logged; a changed log_level applies, a changed listen waits for a
// restart.
func TestServiceReloadLimits(t *testing.T) {
	t.Parallel()
	limits := filepath.Join(t.TempDir(), "resource-limits.yaml")
	writeFile(t, limits, "defaults:\n  max_gpu_equivalents: 2\n  max_gpu_slots_per_container: 1\n")
	g := startGateway(t, gwOpts{RetireAfter: "1s", Extra: map[string]string{"fake_gpus": "2", "limits_file": limits}})
	u := g.addUser(t, "rey", 27302, 27302)

	if r := g.ssh(t, u, "p+gpus=2", "true"); r.code == 0 || !strings.Contains(r.stderr, "max_gpu_slots_per_container") {
		t.Fatalf("two GPUs under a one-GPU file: %s", r)
	}

	writeFile(t, limits, "defaults:\n  max_gpu_slots_per_container: [\n")
	g.signal(t, syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Count(g.out.String(), "the running values stay") == 1 }) {
		t.Fatalf("a broken limits file: no error logged\n%s", lastLines(g.out.String(), 20))
	}
	if r := g.ssh(t, u, "p+gpus=2", "true"); r.code == 0 || !strings.Contains(r.stderr, "max_gpu_slots_per_container") {
		t.Errorf("after a broken file: want the old refusal, got %s", r)
	}

	writeFile(t, limits, "defaults:\n  max_gpu_equivalents: 2\n  max_gpu_slots_per_container: 2\n")
	cfg, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, g.cfgPath, strings.Replace(string(cfg), "listen: 127.0.0.1:", "log_level: debug\nlisten: 127.0.0.2:", 1))
	g.signal(t, syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(g.out.String(), "reload: limits file applied") }) {
		t.Fatalf("no reload logged\n%s", lastLines(g.out.String(), 20))
	}
	log := g.out.String()
	for _, want := range []string{"key=log_level old=info new=debug", `msg="reload: changed, needs a restart" key=listen`} {
		if !strings.Contains(log, want) {
			t.Errorf("reload log lacks %q\n%s", want, lastLines(log, 20))
		}
	}
	if out := g.mustSSH(t, u, "p+gpus=2", `echo "gpus=$NVIDIA_VISIBLE_DEVICES"`); strings.Count(out, "GPU-") != 2 {
		t.Errorf("two GPUs after the reload: %q", out)
	}
	if !strings.Contains(g.out.String(), "level=DEBUG") {
		t.Error("log_level debug did not apply: no debug line")
	}
}

type eventLine struct {
	Timestamp     string         `json:"timestamp"`
	EventType     string         `json:"event_type"`
	User          string         `json:"user"`
	Source        string         `json:"source"`
	Details       map[string]any `json:"details"`
	SchemaVersion string         `json:"schema_version"`
}

// readEvents parses every line of the events file; a line that is not a
// valid envelope under 4 KiB fails the test.
func readEvents(t *testing.T, path string) []eventLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []eventLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if len(sc.Bytes()) >= 4096 {
			t.Errorf("line of %d bytes", len(sc.Bytes()))
		}
		var e eventLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("events file line %q: %v", sc.Text(), err)
		}
		if e.Source != "ds01-gateway" || e.SchemaVersion != "1" || e.Details == nil || e.Timestamp == "" {
			t.Errorf("envelope: %q", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

func hasEvent(es []eventLine, typ, user string) bool {
	for _, e := range es {
		if e.EventType == typ && e.User == user {
			return true
		}
	}
	return false
}

// events_file: every event as a line of DS01's envelope with DS01's type
// names, a refused key as auth.denied, and a new file after logrotate's
// rename and SIGHUP. The gateway logs JSON (log_format) meanwhile.
func TestServiceEventsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "log", "ds01", "events.jsonl")
	g := startGateway(t, gwOpts{RetireAfter: "1s", Extra: map[string]string{"events_file": path, "log_format": "json"}})
	u := g.addUser(t, "eve", 27303, 27303)
	g.mustSSH(t, u, "p", "true")

	strangerKey, _ := newKey(t, g.dir, "stranger")
	if r := runSSH(t, timeoutShort, nil, append(g.sshArgs(strangerKey, "p"), "true")...); r.code == 0 {
		t.Fatalf("unknown key logged in: %s", r)
	}
	var es []eventLine
	if !waitFor(10*time.Second, func() bool {
		es = readEvents(t, path)
		return hasEvent(es, "container.create", "eve") && hasEvent(es, "auth.denied", "")
	}) {
		t.Fatalf("events file lacks container.create of eve or auth.denied: %+v", es)
	}
	for _, e := range es {
		if e.EventType == "container.launch" {
			t.Errorf("our type name where DS01 has one: %+v", e)
		}
		if e.EventType == "auth.denied" && (e.Details["source"] != "127.0.0.1" || e.Details["login"] != "p" || e.Details["count"] != 1.0) {
			t.Errorf("auth.denied details: %v", e.Details)
		}
		if e.EventType == "container.create" && (e.Details["project"] != "p" || e.Details["container"] == nil) {
			t.Errorf("container.create details: %v", e.Details)
		}
	}
	// log_format: json: the gateway's own log is JSON lines too.
	if !strings.Contains(g.out.String(), `"msg":"events file","path":"`+path+`"`) {
		t.Errorf("no JSON log line for the events file:\n%s", lastLines(g.out.String(), 10))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("events file mode: %v %v, want 0640", fi.Mode(), err)
	}

	// logrotate: rename, then HUP (its postrotate).
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	g.signal(t, syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(path); return err == nil }) {
		t.Fatalf("no new events file after rename and SIGHUP\n%s", lastLines(g.out.String(), 20))
	}
	rotated := len(readEvents(t, path+".1"))
	g.mustSSH(t, u, "p", "true")
	if !waitFor(10*time.Second, func() bool { return hasEvent(readEvents(t, path), "container.attach", "eve") }) {
		t.Errorf("the new file did not get the next login's events: %+v", readEvents(t, path))
	}
	if n := len(readEvents(t, path+".1")); n != rotated {
		t.Errorf("the rotated file grew from %d to %d lines after the reopen", rotated, n)
	}
}
