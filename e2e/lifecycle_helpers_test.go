package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lifecycle tests (issue 11) run at scaled-down timeouts: each has its
// own gateway, checks every second and gives processes a 3 s SIGTERM grace.
// They sleep most of the time, so they run in parallel (go test -parallel
// 12 keeps the set under three minutes).
const (
	lcCheck = time.Second     // lifecycle.check_interval
	lcGrace = 3 * time.Second // lifecycle.sigterm_grace
	// lcSlack covers what a loaded CI host adds to a deadline: a sweep
	// late, docker stop and rm, the client noticing.
	lcSlack = 12 * time.Second
)

// lifecycleBlock is the lifecycle: config block of these tests, with kv
// ("key", "value", ...) added or overriding.
func lifecycleBlock(kv ...string) map[string]string {
	m := map[string]string{
		"check_interval": lcCheck.String(),
		"sigterm_grace":  lcGrace.String(),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// waitFor polls cond every 500 ms until it holds or timeout passes; it
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// alertsPath is /workspace/.ds01-alerts of the user's project, on the host.
func (g *gw) alertsPath(u *user, project string) string {
	return filepath.Join(g.workspace(u, project), ".ds01-alerts")
}

// alerts returns the lines of the project's .ds01-alerts ("" if none yet).
func (g *gw) alerts(t *testing.T, u *user, project string) string {
	t.Helper()
	b, err := os.ReadFile(g.alertsPath(u, project))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatalf("read .ds01-alerts: %v", err)
	}
	return string(b)
}

// alertLine is one line of .ds01-alerts: "<RFC3339 time> <text>".
type alertLine struct {
	at   time.Time
	text string
}

func parseAlerts(t *testing.T, s string) []alertLine {
	t.Helper()
	var out []alertLine
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		ts, text, _ := strings.Cut(line, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Errorf(".ds01-alerts line %q does not start with an RFC 3339 time: %v", line, err)
		}
		out = append(out, alertLine{at, text})
	}
	return out
}

// isStop says whether a notice says the container was stopped (not that
// it will stop: warnings say "stops at").
func isStop(text string) bool { return strings.Contains(text, "stopped") }

// isInfo says whether a notice is marked as information (an exempt user's).
func isInfo(text string) bool { return strings.Contains(text, "(info)") }

// noticeLines are the "ds01: " lines of a terminal's or stderr's output,
// without carriage returns.
func noticeLines(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if i := strings.Index(line, "ds01: "); i >= 0 {
			out = append(out, line[i:])
		}
	}
	return out
}

// lcContainer is one entry of `container-list --format json`, loosely:
// the lifecycle fields are read by name where present.
type lcContainer map[string]any

// listContainers runs `ssh ds01@gw container-list --format json` as u. It
// is the command login: it starts nothing in the user's containers, so it
// is not activity.
func (g *gw) listContainers(t *testing.T, u *user) []lcContainer {
	t.Helper()
	out := g.mustSSH(t, u, "ds01", "container-list", "--format", "json")
	var cs []lcContainer
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("container-list --format json: %v\n%s", err, out)
	}
	return cs
}

// container is the project's entry in container-list, or nil.
func (g *gw) container(t *testing.T, u *user, project string) lcContainer {
	t.Helper()
	for _, c := range g.listContainers(t, u) {
		if c["project"] == project {
			return c
		}
	}
	return nil
}

// detached says whether container-list shows the container as detached:
// running with no connection, kept for the work in it.
func (c lcContainer) detached() bool {
	return c["detached"] == true || c["state"] == "detached"
}

func (c lcContainer) String() string {
	b, _ := json.Marshal(map[string]any(c))
	return string(b)
}

// setGPUUtil sets a fake GPU's utilisation, as NVML would report it.
func setGPUUtil(t *testing.T, dir string, index, percent int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(index)), []byte(strconv.Itoa(percent)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// clearGPUUtil makes a fake GPU idle again (no file: 0 %).
func clearGPUUtil(t *testing.T, dir string, index int) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, strconv.Itoa(index))); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// lcLimits is a DS01 resource-limits.yaml that sets no lifecycle keys, so
// the lifecycle block's short timeouts apply, plus per-user overrides.
func lcLimits(t *testing.T, dir, userOverrides string) string {
	t.Helper()
	path := filepath.Join(dir, "resource-limits.yaml")
	content := "defaults:\n  max_gpu_equivalents: 1.0\n  max_gpu_slots_per_container: 1\ndefault_group: student\ngroups:\n  student:\n    max_gpu_equivalents: 1.0\n"
	if userOverrides != "" {
		content += "user_overrides:\n" + userOverrides
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// detachIdle is a login's command that leaves an idle process behind and
// returns at once, the client gone.
const detachIdle = `nohup sleep 1000 >/dev/null 2>&1 &`

// startedAt is when Docker started the container.
func startedAt(t *testing.T, id string) time.Time {
	t.Helper()
	s := docker(t, "inspect", "-f", "{{.State.StartedAt}}", id)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("container %s started at %q: %v", id, s, err)
	}
	return at
}

// since formats how long after t0 something happened, for messages.
func since(t0 time.Time) string {
	return fmt.Sprintf("%.1fs", time.Since(t0).Seconds())
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
