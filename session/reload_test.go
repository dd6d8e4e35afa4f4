package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
)

func policy(t *testing.T, yaml string) *gpu.Policy {
	t.Helper()
	p, err := gpu.ParsePolicy([]byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A limits file read again (SIGHUP) decides the next request: two GPUs
// refused under the old one are granted under the new one.
func TestSetPolicyDecidesTheNextRequest(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, 0)
	inv := gpu.FakeN(2)
	slots, _ := inv.Slots(context.Background())
	m.cfg.Inventory, m.cfg.Alloc, m.cfg.Policy = inv, gpu.NewAllocator(slots), policy(t, "defaults:\n  max_gpu_equivalents: 1\n  max_gpu_slots_per_container: 1\n")

	if _, err := m.Attach(context.Background(), u, "p", Want{GPUs: 2}, io.Discard); !errors.Is(err, ErrLimit) {
		t.Fatalf("two GPUs under a one-GPU policy: %v", err)
	}
	if err := m.GPUs().SetPolicy(policy(t, "defaults:\n  max_gpu_equivalents: 2\n  max_gpu_slots_per_container: 2\n")); err != nil {
		t.Fatal(err)
	}
	l, err := m.Attach(context.Background(), u, "p", Want{GPUs: 2}, io.Discard)
	if err != nil {
		t.Fatalf("two GPUs after the reload: %v", err)
	}
	l.Release()
	if err := m.GPUs().SetPolicy(nil); err == nil {
		t.Error("SetPolicy(nil) accepted")
	}
}

func TestSetLifecycleRules(t *testing.T) {
	m, _ := newTestManager(t, newMem(), 0)
	m.cfg.Lifecycle.Rules = lifecycle.Rules{IdleTimeout: time.Hour}
	if got := m.lifecycleRules().IdleTimeout; got != time.Hour {
		t.Fatalf("before a reload: %s, want the configuration's", got)
	}
	m.SetLifecycleRules(lifecycle.Rules{IdleTimeout: 2 * time.Hour})
	if got := m.lifecycleRules().IdleTimeout; got != 2*time.Hour {
		t.Errorf("after SetLifecycleRules: %s", got)
	}
}

// A forced reload reads the exemptions file even when its modification
// time did not change; a broken file keeps the last good exemptions.
func TestReloadExemptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lifecycle-exemptions.yaml")
	write := func(s string, mod time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mod, mod)
	}
	mod := time.Now().Add(-time.Hour)
	write("exemptions:\n  - username: ann\n    exempt_from: [idle_timeout]\n", mod)
	f := &exemptionsFile{path: path}
	log := slog.New(slog.DiscardHandler)
	if ex := f.load(log); ex == nil || !ex.For("ann", time.Now()).Idle {
		t.Fatal("ann not exempt")
	}
	write("exemptions:\n  - username: bob\n    exempt_from: [idle_timeout]\n", mod) // same mtime
	if ex := f.load(log); !ex.For("ann", time.Now()).Idle {
		t.Fatal("load read a file whose mtime did not change")
	}
	if err := f.reload(log); err != nil {
		t.Fatal(err)
	}
	if ex := f.load(log); ex.For("ann", time.Now()).Idle || !ex.For("bob", time.Now()).Idle {
		t.Error("reload did not read the new file")
	}
	write("exemptions: [", mod)
	if err := f.reload(log); err == nil {
		t.Error("broken file: no error")
	}
	if ex := f.load(log); !ex.For("bob", time.Now()).Idle {
		t.Error("broken file: the last good exemptions are gone")
	}
}
