package docker

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/session/runtime"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var testLimits = runtime.Limits{PidsLimit: 512, Memory: 8 << 30, NanoCPUs: 2_500_000_000}

// cgroup v2 with the cgroupfs driver, against a fake cgroupfs tree: the
// controllers are enabled down to the user's group, whose limits bind every
// step container the engine creates below it.
func TestBuildCgroupV2(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory hugetlb pids rdma misc\n"), 0o644)
	c := &buildCgroups{root: root, v2: true, driver: "cgroupfs"}
	parent, err := c.prepare(context.Background(), "u23000", testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if parent != "/ds01-builds/u23000" {
		t.Errorf("parent = %q", parent)
	}
	for file, want := range map[string]string{
		"cgroup.subtree_control":             "+pids +memory +cpu",
		"ds01-builds/cgroup.subtree_control": "+pids +memory +cpu",
		"ds01-builds/u23000/pids.max":        "512",
		"ds01-builds/u23000/memory.max":      "8589934592",
		"ds01-builds/u23000/cpu.max":         "250000 100000",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// Unlimited is written as such, so a lifted limit is lifted.
	if _, err := c.prepare(context.Background(), "u23000", runtime.Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(root, "ds01-builds/u23000/pids.max")); got != "max" {
		t.Errorf("unlimited pids.max = %q", got)
	}
	os.WriteFile(filepath.Join(root, "ds01-builds/u23000/pids.events"), []byte("max 17\n"), 0o644)
	if n := c.forkFailures("u23000"); n != 17 {
		t.Errorf("forkFailures = %d", n)
	}
}

// Without the pids controller the build is refused, not run unbounded.
func TestBuildCgroupV2WithoutPids(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory\n"), 0o644)
	c := &buildCgroups{root: root, v2: true, driver: "cgroupfs"}
	if _, err := c.prepare(context.Background(), "u1", testLimits); err == nil || !strings.Contains(err.Error(), "pids") {
		t.Errorf("prepare without pids: %v", err)
	}
}

func TestBuildCgroupV1(t *testing.T) {
	root := t.TempDir()
	c := &buildCgroups{root: root, driver: "cgroupfs"}
	if _, err := c.prepare(context.Background(), "u23000", testLimits); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"pids/ds01-builds/u23000/pids.max":                "512",
		"memory/ds01-builds/u23000/memory.limit_in_bytes": "8589934592",
		"cpu/ds01-builds/u23000/cpu.cfs_period_us":        "100000",
		"cpu/ds01-builds/u23000/cpu.cfs_quota_us":         "250000",
	} {
		if got := readFile(t, filepath.Join(root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := c.prepare(context.Background(), "../etc", testLimits); err == nil {
		t.Error("a group name with a path was accepted")
	}
}

// With the systemd driver, the parent is a slice and systemd sets its limits.
func TestBuildCgroupSystemd(t *testing.T) {
	var calls [][]string
	c := &buildCgroups{root: t.TempDir(), v2: true, driver: "systemd", systemctl: func(_ context.Context, args ...string) error {
		calls = append(calls, args)
		return nil
	}}
	parent, err := c.prepare(context.Background(), "u23000", testLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"set-property", "--runtime", "ds01-builds-u23000.slice", "TasksMax=512", "MemoryMax=8589934592", "CPUQuota=250%"}
	if parent != "ds01-builds-u23000.slice" || len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
		t.Errorf("parent %q, systemctl %q", parent, calls)
	}
	if d := c.pidsDir("u23000"); !strings.HasSuffix(d, "ds01.slice/ds01-builds.slice/ds01-builds-u23000.slice") {
		t.Errorf("pids dir = %s", d)
	}
}
