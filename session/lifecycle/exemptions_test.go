package lifecycle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const exemptionsYAML = `# DS01 lifecycle exemptions
- username: alice
  exempt_from: [idle_timeout_h, max_runtime_h]
  expires_on: "2027-01-31"
  reason: "thesis deadline"
- username: bob
  exempt_from: [max_runtime_h]
  expires_on: 2027-01-31          # bare YAML date: DS01 ignores it, we do not
  reason: long training
- username: 204214
  exempt_from: [idle_timeout]
- username: carol
  exempt_from: [idle_timeout_h]
  expires_on: "2026-06-30"
  approved_by: admin                # other keys are ignored
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadExemptions(t *testing.T) {
	e, err := LoadExemptions(writeFile(t, "lifecycle-exemptions.yaml", exemptionsYAML))
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		user string
		want Exemption
	}{
		{"alice", Exemption{Idle: true, Runtime: true, Until: day, Reason: "thesis deadline"}},
		{"bob", Exemption{Runtime: true, Until: day, Reason: "long training"}},
		{"204214", Exemption{Idle: true}}, // no expiry: holds until removed
		{"carol", Exemption{}},            // expired
		{"dave", Exemption{}},
		{"Alice", Exemption{}},
	} {
		if got := e.For(tc.user, now); got != tc.want {
			t.Errorf("For(%q) = %+v, want %+v", tc.user, got, tc.want)
		}
	}
}

func TestExemptionExpiresAfterItsLastDayUTC(t *testing.T) {
	e, err := ParseExemptions([]byte(`[{username: alice, exempt_from: [idle_timeout_h], expires_on: "2027-01-31"}]`))
	if err != nil {
		t.Fatal(err)
	}
	last := time.Date(2027, 1, 31, 23, 59, 59, 0, time.UTC)
	if !e.For("alice", last).Idle {
		t.Error("not exempt on its last day")
	}
	if e.For("alice", last.Add(time.Second)).Idle {
		t.Error("still exempt the day after")
	}
	// The day is a UTC day, whatever the caller's zone.
	berlin := time.FixedZone("CET", 3600)
	if e.For("alice", time.Date(2027, 2, 1, 0, 30, 0, 0, berlin)).Idle != true {
		t.Error("00:30 CET is still Jan 31 UTC")
	}
}

func TestExemptionsAddUp(t *testing.T) {
	e, err := ParseExemptions([]byte(`
exemptions:
  - {username: alice, exempt_from: [idle_timeout_h], expires_on: "2027-03-01", reason: "first"}
  - {username: alice, exempt_from: [max_runtime_h], expires_on: "2027-02-01", reason: "second"}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := e.For("alice", t0)
	want := Exemption{Idle: true, Runtime: true, Until: time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), Reason: "first"}
	if got != want {
		t.Errorf("For = %+v, want %+v", got, want)
	}
}

func TestExemptionsMissingOrEmpty(t *testing.T) {
	e, err := LoadExemptions(filepath.Join(t.TempDir(), "none.yaml"))
	if err != nil || e.For("alice", t0) != (Exemption{}) {
		t.Errorf("missing file: %v", err)
	}
	for _, src := range []string{"", "# nothing yet\n", "exemptions: []\n", "exemptions:\n"} {
		e, err := ParseExemptions([]byte(src))
		if err != nil || e.For("alice", t0) != (Exemption{}) {
			t.Errorf("%q: %v", src, err)
		}
	}
	var none *Exemptions
	if none.For("alice", t0) != (Exemption{}) {
		t.Error("nil Exemptions exempt someone")
	}
}

func TestExemptionsReasonIsOneLine(t *testing.T) {
	e, err := ParseExemptions([]byte("- {username: a, exempt_from: [max_runtime_h], reason: \"two\\nlines\\u001b[31m  red\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.For("a", t0).Reason; got != "two lines [31m red" {
		t.Errorf("reason %q", got)
	}
}

func TestExemptionsErrorsNameFileAndEntry(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"- {username: alice, exempt_from: [idle]}\n", `entry 1 (alice): exempt_from: unknown limit "idle": want idle_timeout_h or max_runtime_h`},
		{"- {username: a, exempt_from: [max_runtime_h]}\n- {exempt_from: [max_runtime_h]}\n", `entry 2: username: want a user name, got nothing`},
		{"- {username: a}\n", `entry 1 (a): exempt_from: want a list of idle_timeout_h and/or max_runtime_h, got nothing`},
		{"- {username: a, exempt_from: max_runtime_h}\n", `entry 1 (a): exempt_from: want a list of idle_timeout_h and/or max_runtime_h, got "max_runtime_h"`},
		{"- {username: a, exempt_from: [max_runtime_h], expires_on: 31.01.2027}\n", `entry 1 (a): expires_on: want a date like 2027-01-31, got "31.01.2027"`},
		{"- {username: a, exempt_from: [max_runtime_h], expires_on: \"2027-02-30\"}\n", `entry 1 (a): expires_on: want a date like 2027-01-31, got "2027-02-30"`},
		{"- {username: a, exempt_from: [max_runtime_h], expires_on: 20270131}\n", `entry 1 (a): expires_on: want a date like 2027-01-31, got 20270131`},
		{"- {username: a, exempt_from: [max_runtime_h], expires: 2027-01-31}\n", `entry 1 (a): "expires": did you mean expires_on?`},
		{"- alice\n", `entry 1: want a mapping with username and exempt_from, got "alice"`},
		{"users: []\n", `top level: want a list of exemptions (or exemptions: with one)`},
		{"exemptions: {alice: x}\n", `top level: want a list of exemptions, got a mapping`},
		{"[\n", `yaml:`},
	} {
		path := writeFile(t, "lifecycle-exemptions.yaml", tc.src)
		_, err := LoadExemptions(path)
		want := "exemptions file " + path + ": " + tc.want
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: err = %v\nwant %s", tc.src, err, want)
		}
	}
	dir := t.TempDir()
	if _, err := LoadExemptions(dir); err == nil || !strings.HasPrefix(err.Error(), "exemptions file: ") {
		t.Errorf("a directory: err = %v", err)
	}
}
