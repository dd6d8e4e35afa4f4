package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// The classic builder's API gives a RUN step memory, CPU and shm limits but
// no process limit: a step ran with pids.max=max and forked 5,000
// processes. Every step container is created under the build's cgroup
// parent, though, and a limit set on a parent binds everything below it.
// So each user gets one build cgroup, which the gateway creates and limits
// before each build, and which all of that user's builds share.

// buildCgroupDir is the gateway's own subtree, beside Docker's.
const buildCgroupDir = "ds01-builds"

// validGroup keeps a group name a single path element and a slice name.
var validGroup = regexp.MustCompile(`^[a-z0-9]{1,32}$`)

// buildCgroups places builds under per-user cgroups. Docker's cgroup
// driver decides how: with "cgroupfs" the gateway writes the cgroup files
// itself (v1: one hierarchy per controller; v2: the unified one); with
// "systemd" the parent must be a slice, and systemd must set its limits
// (systemctl set-property), since it owns that tree.
type buildCgroups struct {
	root   string // where cgroupfs is mounted: /sys/fs/cgroup
	v2     bool
	driver string
	// systemctl runs systemctl; a test replaces it.
	systemctl func(ctx context.Context, args ...string) error
}

func newBuildCgroups(driver, version string) *buildCgroups {
	return &buildCgroups{root: "/sys/fs/cgroup", v2: version == "2", driver: driver, systemctl: runSystemctl}
}

func runSystemctl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// prepare sets group's limits and returns the CgroupParent a build of the
// group runs under. A limit of zero means unlimited.
func (c *buildCgroups) prepare(ctx context.Context, group string, l runtime.Limits) (string, error) {
	if !validGroup.MatchString(group) {
		return "", fmt.Errorf("build cgroup: invalid group %q", group)
	}
	switch c.driver {
	case "systemd":
		return c.prepareSlice(ctx, group, l)
	case "cgroupfs", "":
		if c.v2 {
			return c.prepareV2(group, l)
		}
		return c.prepareV1(group, l)
	}
	return "", fmt.Errorf("build cgroup: unknown cgroup driver %q", c.driver)
}

// prepareV1 writes the limits into the pids, memory and cpu hierarchies.
// The pids limit is the point: without its controller the build is
// refused rather than run unbounded.
func (c *buildCgroups) prepareV1(group string, l runtime.Limits) (string, error) {
	pids := filepath.Join(c.root, "pids", buildCgroupDir, group)
	if err := os.MkdirAll(pids, 0o755); err != nil { //nolint:gosec // cgroupfs directories are 0755, as the runtime makes them
		return "", fmt.Errorf("build cgroup: %w", err)
	}
	if err := writeCgroup(pids, "pids.max", limitOr(l.PidsLimit, "max")); err != nil {
		return "", err
	}
	if l.Memory > 0 {
		mem := filepath.Join(c.root, "memory", buildCgroupDir, group)
		if err := os.MkdirAll(mem, 0o755); err != nil { //nolint:gosec // as above
			return "", fmt.Errorf("build cgroup: %w", err)
		}
		if err := writeCgroup(mem, "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10)); err != nil {
			return "", err
		}
	}
	if l.NanoCPUs > 0 {
		cpu := filepath.Join(c.root, "cpu", buildCgroupDir, group)
		if err := os.MkdirAll(cpu, 0o755); err != nil { //nolint:gosec // as above
			return "", fmt.Errorf("build cgroup: %w", err)
		}
		if err := writeCgroup(cpu, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return "", err
		}
		if err := writeCgroup(cpu, "cpu.cfs_quota_us", strconv.FormatInt(cpuQuota(l.NanoCPUs), 10)); err != nil {
			return "", err
		}
	}
	return "/" + buildCgroupDir + "/" + group, nil
}

// prepareV2 enables the controllers down to the group and writes its
// limits. Docker's runc enables them below the group itself.
func (c *buildCgroups) prepareV2(group string, l runtime.Limits) (string, error) {
	avail, err := os.ReadFile(filepath.Join(c.root, "cgroup.controllers"))
	if err != nil {
		return "", fmt.Errorf("build cgroup: %w", err)
	}
	var enable []string
	for _, ctl := range []string{"pids", "memory", "cpu"} {
		if strings.Contains(" "+strings.TrimSpace(string(avail))+" ", " "+ctl+" ") {
			enable = append(enable, "+"+ctl)
		}
	}
	if len(enable) == 0 || enable[0] != "+pids" {
		return "", errors.New("build cgroup: the pids controller is not available")
	}
	dirs := []string{c.root, filepath.Join(c.root, buildCgroupDir)}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil { //nolint:gosec // as above
			return "", fmt.Errorf("build cgroup: %w", err)
		}
		if err := writeCgroup(d, "cgroup.subtree_control", strings.Join(enable, " ")); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(c.root, buildCgroupDir, group)
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // as above
		return "", fmt.Errorf("build cgroup: %w", err)
	}
	if err := writeCgroup(dir, "pids.max", limitOr(l.PidsLimit, "max")); err != nil {
		return "", err
	}
	if err := writeCgroup(dir, "memory.max", limitOr(l.Memory, "max")); err != nil && l.Memory > 0 {
		return "", err
	}
	quota := "max"
	if l.NanoCPUs > 0 {
		quota = strconv.FormatInt(cpuQuota(l.NanoCPUs), 10)
	}
	if err := writeCgroup(dir, "cpu.max", fmt.Sprintf("%s %d", quota, cpuPeriod)); err != nil && l.NanoCPUs > 0 {
		return "", err
	}
	return "/" + buildCgroupDir + "/" + group, nil
}

// prepareSlice asks systemd for the group's slice and its limits. Slices
// need no unit file: set-property on an unknown one loads it, and the
// builder's scopes start it.
func (c *buildCgroups) prepareSlice(ctx context.Context, group string, l runtime.Limits) (string, error) {
	slice := c.slice(group)
	cpu := "CPUQuota="
	if l.NanoCPUs > 0 {
		cpu = fmt.Sprintf("CPUQuota=%d%%", (l.NanoCPUs+9_999_999)/10_000_000)
	}
	err := c.systemctl(ctx, "set-property", "--runtime", slice,
		"TasksMax="+limitOr(l.PidsLimit, "infinity"), "MemoryMax="+limitOr(l.Memory, "infinity"), cpu)
	if err != nil {
		return "", fmt.Errorf("build cgroup: %w", err)
	}
	return slice, nil
}

// slice is the group's systemd slice: a dash nests it, so it lies in
// ds01.slice/ds01-builds.slice.
func (c *buildCgroups) slice(group string) string { return "ds01-builds-" + group + ".slice" }

// pidsDir is where the group's pids controller files are.
func (c *buildCgroups) pidsDir(group string) string {
	var rel string
	if c.driver == "systemd" {
		rel = filepath.Join("ds01.slice", "ds01-builds.slice", c.slice(group))
	} else {
		rel = filepath.Join(buildCgroupDir, group)
	}
	if c.v2 {
		return filepath.Join(c.root, rel)
	}
	return filepath.Join(c.root, "pids", rel)
}

// forkFailures returns how many forks the group's pids limit has refused;
// a count that grew during a build explains its failure.
func (c *buildCgroups) forkFailures(group string) int64 {
	data, err := os.ReadFile(filepath.Join(c.pidsDir(group), "pids.events"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "max "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func writeCgroup(dir, file, val string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil { //nolint:gosec // a cgroup control file: it exists, the mode is not used
		return fmt.Errorf("build cgroup: write %s: %w", file, err)
	}
	return nil
}

func limitOr(n int64, none string) string {
	if n <= 0 {
		return none
	}
	return strconv.FormatInt(n, 10)
}

func cpuQuota(nanoCPUs int64) int64 { return nanoCPUs * cpuPeriod / 1e9 }
