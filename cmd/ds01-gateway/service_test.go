package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
)

func TestServiceKeys(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, "events_file: /var/log/ds01/events.jsonl\nlog_format: json\nshutdown_timeout: 45s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.EventsFile != "/var/log/ds01/events.jsonl" || cfg.LogFormat != "json" || cfg.ShutdownTimeout.Duration != 45*time.Second {
		t.Errorf("keys not applied: %q %q %v", cfg.EventsFile, cfg.LogFormat, cfg.ShutdownTimeout)
	}
	def := defaultConfig()
	if def.EventsFile != "" || def.LogFormat != "text" || def.ShutdownTimeout.Duration != 30*time.Second {
		t.Errorf("defaults: events_file %q (want off), log_format %q, shutdown_timeout %v", def.EventsFile, def.LogFormat, def.ShutdownTimeout)
	}
	for body, want := range map[string]string{
		"log_format: xml\n":        "log_format: want text or json",
		"shutdown_timeout: -1s\n":  "shutdown_timeout: must not be negative",
		"events_file: /var/log/\n": "events_file: want a file path",
	} {
		cfg, err := loadConfig(writeConfig(t, body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// reloadFixture is a reloader over a config file and a limits file in a
// temporary directory, with recording setters.
type reloadFixture struct {
	t                   *testing.T
	cfgPath, limitsPath string
	r                   *reloader
	logs                *logSink
	policies            []*gpu.Policy
	rules               []lifecycle.Rules
	reopened, exempted  int
}

func newReloadFixture(t *testing.T, extra string) *reloadFixture {
	dir := t.TempDir()
	f := &reloadFixture{t: t, cfgPath: filepath.Join(dir, "gateway.yaml"), limitsPath: filepath.Join(dir, "resource-limits.yaml"), logs: &logSink{}}
	f.write(f.limitsPath, "defaults:\n  max_gpu_slots_per_container: 1\n")
	f.write(f.cfgPath, "limits_file: "+f.limitsPath+"\n"+extra)
	c := &common{config: f.cfgPath}
	cfg, err := c.reload("")
	if err != nil {
		t.Fatal(err)
	}
	level := &slog.LevelVar{}
	level.Set(parseLevel(cfg.LogLevel))
	f.r = &reloader{
		log: slog.New(slog.NewTextHandler(f.logs, nil)), load: func() (Config, error) { return c.reload("") }, cur: cfg, level: level,
		setPolicy:        func(p *gpu.Policy) error { f.policies = append(f.policies, p); return nil },
		setRules:         func(r lifecycle.Rules) { f.rules = append(f.rules, r) },
		reloadExemptions: func() error { f.exempted++; return nil },
		reopenEvents:     func() error { f.reopened++; return nil },
	}
	return f
}

func (f *reloadFixture) write(path, body string) {
	f.t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// A reload applies log_level, the lifecycle rules and the limits file,
// logs each change as old → new, and names the keys that need a restart.
func TestReloadApplies(t *testing.T) {
	f := newReloadFixture(t, "lifecycle:\n  idle_timeout: 30m\n")
	f.write(f.limitsPath, "defaults:\n  max_gpu_slots_per_container: 2\n")
	f.write(f.cfgPath, "limits_file: "+f.limitsPath+"\nlog_level: debug\nlisten: 0.0.0.0:22\nlifecycle:\n  idle_timeout: 2h\n")
	f.r.reload()
	logs := f.logs.take()
	for _, want := range []string{
		`msg="reload: changed" key=log_level old=info new=debug`,
		`msg="reload: changed" key=lifecycle.idle_timeout old=30m0s new=2h0m0s`,
		`msg="reload: changed, needs a restart" key=listen running=127.0.0.1:2222 file=0.0.0.0:22`,
		`msg="reload: limits file applied"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if f.r.level.Level() != slog.LevelDebug {
		t.Errorf("level %v, want debug", f.r.level.Level())
	}
	if len(f.rules) != 1 || f.rules[0].IdleTimeout != 2*time.Hour {
		t.Errorf("rules set %+v", f.rules)
	}
	if len(f.policies) != 1 {
		t.Fatalf("%d policies set, want 1", len(f.policies))
	}
	if l, _ := f.policies[0].For("ann", ""); l.MaxSlotsPerContainer == nil || *l.MaxSlotsPerContainer != 2 {
		t.Errorf("new policy not the file's: %+v", l)
	}
	if f.reopened != 1 || f.exempted != 1 {
		t.Errorf("events reopened %d, exemptions reloaded %d; want 1 each", f.reopened, f.exempted)
	}

	// Again, unchanged: nothing reported as changed; listen still waits.
	f.r.reload()
	logs = f.logs.take()
	if strings.Contains(logs, `msg="reload: changed"`) || !strings.Contains(logs, "key=listen") {
		t.Errorf("second reload:\n%s", logs)
	}
}

// A bad configuration or limits file changes nothing and says why at
// error level; the events file is reopened all the same.
func TestReloadBadFileKeepsValues(t *testing.T) {
	for name, tc := range map[string]struct{ cfg, limits, want string }{
		"bad config":      {cfg: "log_level: debug\nlog_level_typo: x\n", want: "unknown option"},
		"invalid config":  {cfg: "log_level: loud\n", want: "log_level: want debug"},
		"bad limits file": {cfg: "log_level: debug\n", limits: "defaults:\n  max_gpu_slots_per_container: many\n", want: "limits file"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newReloadFixture(t, "")
			f.write(f.cfgPath, "limits_file: "+f.limitsPath+"\n"+tc.cfg)
			if tc.limits != "" {
				f.write(f.limitsPath, tc.limits)
			}
			f.r.reload()
			logs := f.logs.take()
			if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "the running values stay") || !strings.Contains(logs, tc.want) {
				t.Errorf("log:\n%s", logs)
			}
			if f.r.level.Level() != slog.LevelInfo || len(f.policies) != 0 || len(f.rules) != 0 {
				t.Errorf("something applied: level %v, %d policies, %d rules", f.r.level.Level(), len(f.policies), len(f.rules))
			}
			if f.reopened != 1 {
				t.Errorf("events file reopened %d times, want 1", f.reopened)
			}
		})
	}
}

func TestDiffConfig(t *testing.T) {
	a, b := defaultConfig(), defaultConfig()
	b.Limits.Memory = 1 << 30
	b.AllowedBases = []string{"debian:*"}
	b.Lifecycle.MaxRuntime = Duration{time.Hour}
	got := diffConfig(a, b)
	var keys []string
	for _, c := range got {
		keys = append(keys, c.key+": "+c.old+" → "+c.new)
	}
	want := []string{"allowed_bases: [] → [debian:*]", "lifecycle.max_runtime: 24h0m0s → 1h0m0s", "limits.memory: 34359738368 → 1073741824"}
	if strings.Join(keys, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
}

// The example configuration in contrib/ loads and validates.
func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig(filepath.Join("..", "..", "contrib", "ds01", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.EventsFile != "/var/log/ds01/events.jsonl" || cfg.LogFormat != "json" {
		t.Errorf("example: events_file %q, log_format %q", cfg.EventsFile, cfg.LogFormat)
	}
}

// log_format json writes one JSON object a line; the level can change
// while it runs.
func TestLoggerFormats(t *testing.T) {
	var b bytes.Buffer
	log, level := newLogger(&b, "info", "json")
	log.Debug("hidden")
	log.Info("hello", "user", "ann")
	level.Set(slog.LevelDebug)
	log.Debug("shown")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil || m["msg"] != "hello" || m["user"] != "ann" || m["level"] != "INFO" {
		t.Errorf("json line %q: %v", lines[0], err)
	}
	b.Reset()
	log, _ = newLogger(&b, "warn", "text")
	log.Info("hidden")
	log.Warn("careful", "n", 1)
	if got := b.String(); !strings.Contains(got, `level=WARN msg=careful n=1`) || strings.Contains(got, "hidden") {
		t.Errorf("text log %q", got)
	}
}
