package gpu

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const limitGiB = int64(1) << 30

// limitsOf builds expected Limits; -1 stands for unlimited (nil).
func limitsOf(gpuEq float64, slots, containers int, cpus float64, mem, shm, pids int64) Limits {
	var l Limits
	if gpuEq >= 0 {
		l.MaxGPUEq = limitPtr(gpuEq)
	}
	if slots >= 0 {
		l.MaxSlotsPerContainer = limitPtr(slots)
	}
	if containers >= 0 {
		l.MaxContainers = limitPtr(containers)
	}
	if cpus >= 0 {
		l.MaxCPUs = limitPtr(cpus)
	}
	if mem >= 0 {
		l.Memory = limitPtr(mem)
	}
	if shm >= 0 {
		l.ShmSize = limitPtr(shm)
	}
	if pids >= 0 {
		l.PidsLimit = limitPtr(pids)
	}
	return l
}

func limitMustParse(t *testing.T, src, dir string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(src), dir)
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

func limitCheckFor(t *testing.T, p *Policy, user, recorded string, wantL Limits, wantGroup string) {
	t.Helper()
	got, g := p.For(user, recorded)
	if g != wantGroup {
		t.Errorf("For(%q, %q) group = %q, want %q", user, recorded, g, wantGroup)
	}
	if !reflect.DeepEqual(got, wantL) {
		t.Errorf("For(%q, %q) =\n  %s\nwant\n  %s", user, recorded,
			strings.Join(got.Describe(), ", "), strings.Join(wantL.Describe(), ", "))
	}
}

// limitCheckForDS is limitCheckFor for files whose defaults leave out the
// GPU and container counts: those take DS01's defaults, never unlimited.
func limitCheckForDS(t *testing.T, p *Policy, user, recorded string, wantL Limits, wantGroup string) {
	t.Helper()
	if wantL.MaxGPUEq == nil {
		wantL.MaxGPUEq = limitPtr(1.0)
	}
	if wantL.MaxSlotsPerContainer == nil {
		wantL.MaxSlotsPerContainer = limitPtr(1)
	}
	if wantL.MaxContainers == nil {
		wantL.MaxContainers = limitPtr(3)
	}
	limitCheckFor(t, p, user, recorded, wantL, wantGroup)
}

const limitTiered = `
defaults:
  max_gpu_equivalents: 1.0
  max_gpu_slots_per_container: 1
  max_cpus: 32
  memory: 32g
  shm_size: 16g
  max_containers_per_user: 3
  pids_limit: 4096
groups:
  student:
    max_gpu_equivalents: 2.0
  admin:
    max_gpu_equivalents: null
    max_gpu_slots_per_container: null
    max_cpus: 64
    memory: 128g
    max_containers_per_user: 10
user_overrides:
  carol: {max_gpu_equivalents: 3.0, shm_size: 20g}
  root: {pids_limit: null}
`

func TestPolicyPrecedenceKeyByKey(t *testing.T) {
	p := limitMustParse(t, limitTiered, "")
	// A group that sets only max_gpu_equivalents inherits the rest from defaults.
	limitCheckFor(t, p, "alice", "student", limitsOf(2, 1, 3, 32, 32*limitGiB, 16*limitGiB, 4096), "student")
	// The user override wins over the group, per key; other keys still come
	// from the group, then defaults.
	limitCheckFor(t, p, "carol", "student", limitsOf(3, 1, 3, 32, 32*limitGiB, 20*limitGiB, 4096), "student")
	limitCheckFor(t, p, "carol", "", limitsOf(3, 1, 3, 32, 32*limitGiB, 20*limitGiB, 4096), "")
	// No group, no default_group: defaults only.
	limitCheckFor(t, p, "alice", "", limitsOf(1, 1, 3, 32, 32*limitGiB, 16*limitGiB, 4096), "")
}

func TestPolicyNullOverridesAbsentInherits(t *testing.T) {
	p := limitMustParse(t, limitTiered, "")
	// admin: null beats the defaults' numbers; shm_size and pids_limit are
	// absent and inherited.
	limitCheckFor(t, p, "dave", "admin", limitsOf(-1, -1, 10, 64, 128*limitGiB, 16*limitGiB, 4096), "admin")
	// A user-level null also overrides.
	limitCheckFor(t, p, "root", "admin", limitsOf(-1, -1, 10, 64, 128*limitGiB, 16*limitGiB, -1), "admin")

	// A higher tier's number overrides a lower tier's null.
	p = limitMustParse(t, `
defaults: {memory: null, max_cpus: unlimited}
groups: {g: {memory: 8g}}
`, "")
	limitCheckForDS(t, p, "x", "g", Limits{Memory: limitPtr(8 * limitGiB)}, "g")
	limitCheckForDS(t, p, "x", "", Limits{}, "")
}

func TestPolicyForDoesNotShareState(t *testing.T) {
	p := limitMustParse(t, limitTiered, "")
	l, _ := p.For("alice", "student")
	*l.Memory = 1
	*l.MaxGPUEq = 99
	limitCheckFor(t, p, "alice", "student", limitsOf(2, 1, 3, 32, 32*limitGiB, 16*limitGiB, 4096), "student")
}

func TestPolicyGroupResolution(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "groups"), 0o755); err != nil {
		t.Fatal(err)
	}
	members := "# researchers\n\ndan   # PhD\n  erin\nalice\n"
	if err := os.WriteFile(filepath.Join(dir, "groups", "researcher.members"), []byte(members), 0o644); err != nil {
		t.Fatal(err)
	}
	p := limitMustParse(t, `
defaults: {max_gpu_equivalents: 1.0}
default_group: student
groups:
  student:
    members: [alice, bob]
    max_gpu_equivalents: 2.0
  researcher:
    max_gpu_equivalents: 4.0
  faculty:
    members: [frank]
    max_gpu_equivalents: 5.0
`, dir)
	one := func(f float64) Limits { return Limits{MaxGPUEq: limitPtr(f)} }

	limitCheckForDS(t, p, "bob", "", one(2), "student")        // inline members:
	limitCheckForDS(t, p, "dan", "", one(4), "researcher")     // groups/researcher.members, comment stripped
	limitCheckForDS(t, p, "erin", "", one(4), "researcher")    // leading space trimmed
	limitCheckForDS(t, p, "frank", "", one(5), "faculty")      // inline members:
	limitCheckForDS(t, p, "nobody", "", one(2), "student")     // default_group
	limitCheckForDS(t, p, "bob", "faculty", one(5), "faculty") // recorded group wins over membership
	limitCheckForDS(t, p, "nobody", "researcher", one(4), "researcher")
	limitCheckForDS(t, p, "dan", "gone", one(4), "researcher") // unknown recorded group: membership
	limitCheckForDS(t, p, "nobody", "gone", one(2), "student") // unknown recorded group: default_group
	// alice is listed under student (first in the file) and in
	// researcher.members: the first group in file order wins, as in DS01.
	limitCheckForDS(t, p, "alice", "", one(2), "student")

	if got, want := p.Groups(), []string{"faculty", "researcher", "student"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Groups() = %v, want %v", got, want)
	}
}

func TestPolicyMembershipFollowsFileOrder(t *testing.T) {
	// "zeta" sorts last but comes first in the file, so it wins.
	p := limitMustParse(t, `
groups:
  zeta: {members: [sam], max_cpus: 2}
  alpha: {members: [sam], max_cpus: 1}
`, "")
	limitCheckForDS(t, p, "sam", "", Limits{MaxCPUs: limitPtr(2.0)}, "zeta")
}

func TestPolicyYAMLMergeKeys(t *testing.T) {
	p := limitMustParse(t, `
x-base: &base {max_cpus: 8, memory: 16g}
groups:
  a:
    <<: *base
    memory: 24g
`, "")
	limitCheckForDS(t, p, "u", "a", Limits{MaxCPUs: limitPtr(8.0), Memory: limitPtr(24 * limitGiB)}, "a")
}

func TestPolicyRealisticDS01File(t *testing.T) {
	p, err := LoadPolicy(filepath.Join("testdata", "limits", "resource-limits.yaml"))
	if err != nil {
		t.Fatalf("LoadPolicy: %v", err)
	}
	if got, want := p.Groups(), []string{"admin", "faculty", "researcher", "student"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Groups() = %v, want %v", got, want)
	}
	// The lifecycle keys: the "_h" ones are read; DS01's older
	// "idle_timeout: 1h" spellings beside them are ignored.
	life := func(l Limits, idle, runtime, hold limitOptDur) Limits {
		l.IdleTimeout, l.MaxRuntime, l.GPUHoldAfterStop = idle, runtime, hold
		return l
	}
	student := life(limitsOf(2, 2, 3, 32, 32*limitGiB, 16*limitGiB, 4096), limitHours(0.5), limitHours(24), limitHours(0.25))
	researcher := life(limitsOf(4, 3, 5, 48, 64*limitGiB, 32*limitGiB, 4096), limitHours(1), limitHours(48), limitHours(0.25))
	faculty := life(limitsOf(4, 4, 5, 64, 128*limitGiB, 64*limitGiB, 4096), limitHours(2), limitHours(72), limitHours(0.25))
	admin := life(limitsOf(-1, -1, 10, 64, 128*limitGiB, 64*limitGiB, 4096), limitHours(1), limitHours(24), limitHours(1))
	admin.GPUIdleThreshold = Opt[float64]{Set: true, V: 10}

	limitCheckFor(t, p, "bob", "", student, "student")         // groups/student.members
	limitCheckFor(t, p, "ivy", "", student, "student")         // inline '#' comment in .members
	limitCheckFor(t, p, "someone", "", student, "student")     // default_group
	limitCheckFor(t, p, "dan", "", researcher, "researcher")   // groups/researcher.members
	limitCheckFor(t, p, "henry", "", researcher, "researcher") // researcher comes before faculty
	limitCheckFor(t, p, "frank", "", faculty, "faculty")       // inline members:
	limitCheckFor(t, p, "datasciencelab", "", admin, "admin")  // groups/admin.members
	limitCheckFor(t, p, "zoe", "", student, "student")         // archived.members: no such group
	// user-overrides.yaml: null idle and runtime limits.
	limitCheckFor(t, p, "204214@hertie-school.lan", "", life(researcher, limitNever, limitNever, limitHours(0.25)), "researcher")

	carol := student
	carol.MaxGPUEq = limitPtr(3.0)
	carol.IdleTimeout = limitNever
	limitCheckFor(t, p, "carol", "", carol, "student") // inline user_overrides

	// user-overrides.yaml next to the file.
	erin := faculty
	erin.MaxSlotsPerContainer = limitPtr(4)
	erin.Memory = limitPtr(96 * limitGiB)
	erin.MaxRuntime = limitHours(48) // the user's value beats the group's 72
	limitCheckFor(t, p, "erin", "faculty", erin, "faculty")
}

func TestPolicyUserOverridesFileReplacesInline(t *testing.T) {
	dir := t.TempDir()
	file := "carol:\n  max_cpus: 4\n"
	if err := os.WriteFile(filepath.Join(dir, "user-overrides.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	p := limitMustParse(t, `
defaults: {max_cpus: 1, memory: 1g}
user_overrides:
  carol: {memory: 2g}
  dan: {memory: 3g}
`, dir)
	// As in DS01, the file's entry replaces carol's inline entry as a whole.
	limitCheckForDS(t, p, "carol", "", Limits{MaxCPUs: limitPtr(4.0), Memory: limitPtr(limitGiB)}, "")
	limitCheckForDS(t, p, "dan", "", Limits{MaxCPUs: limitPtr(1.0), Memory: limitPtr(3 * limitGiB)}, "")
}

func TestPolicyValueForms(t *testing.T) {
	p := limitMustParse(t, `
defaults:
  max_gpu_equivalents: 2        # int for a float key
  max_gpu_slots_per_container: 2.0  # whole float for an int key
  max_containers_per_user: "4"  # quoted numbers work, as with DS01's float()/int()
  max_cpus: 0.5
  memory: 536870912             # plain bytes
  shm_size: 512m
  pids_limit: 100
`, "")
	limitCheckFor(t, p, "u", "", limitsOf(2, 2, 4, 0.5, 512<<20, 512<<20, 100), "")
}

func TestPolicyBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"size word", "groups:\n  student:\n    memory: lots\n",
			`groups.student.memory: want a size like 32g, got "lots"`},
		{"quoted word", "defaults:\n  max_gpu_equivalents: \"two\"\n",
			`defaults.max_gpu_equivalents: want a number or null for unlimited, got "two"`},
		{"negative", "defaults:\n  max_gpu_equivalents: -1\n",
			`defaults.max_gpu_equivalents: want a number >= 0 or null for unlimited, got -1`},
		{"groups list", "groups: [a, b]\n",
			`groups: want a mapping of group name to limits, got a list`},
		{"fractional slots", "defaults: {max_gpu_slots_per_container: 1.5}\n",
			`defaults.max_gpu_slots_per_container: want a whole number or null for unlimited, got 1.5`},
		{"zero cpus", "defaults: {max_cpus: 0}\n",
			`defaults.max_cpus: want a number above 0 or null for unlimited, got 0`},
		{"tiny memory", "defaults: {memory: 32}\n",
			`defaults.memory: want a size of at least 6m (like 32g) or null for unlimited, got 32`},
		{"bool", "user_overrides: {carol: {max_containers_per_user: true}}\n",
			`user_overrides.carol.max_containers_per_user: want a whole number or null for unlimited, got true`},
		{"group not mapping", "groups: {student: 3}\n",
			`groups.student: want a mapping of limits, got 3`},
		{"members not list", "groups: {student: {members: alice}}\n",
			`groups.student.members: want a list of user names, got "alice"`},
		{"default_group undefined", "default_group: studnet\ngroups: {student: {}}\n",
			`default_group: "studnet" is not defined under groups (defined: student)`},
		{"top-level list", "- defaults\n", `top level: want a mapping`},
		{"empty", "", "no defaults, groups or user_overrides"},
		{"comments only", "# nothing here\n", "no defaults, groups or user_overrides"},
		{"unrelated", "enforcement: {aggregate_limits: true}\n", "no defaults, groups or user_overrides"},
		{"bad yaml", "defaults: [\n", "yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.src), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadPolicyErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(path, []byte("groups:\n  student:\n    memory: lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicy(path)
	want := "limits file " + path + `: groups.student.memory: want a size like 32g, got "lots"`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}

	if _, err := LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil || !os.IsNotExist(limitUnwrapAll(err)) {
		t.Fatalf("missing file: err = %v, want a not-exist error", err)
	}

	// A bad user-overrides.yaml names that file.
	if err := os.WriteFile(filepath.Join(dir, "user-overrides.yaml"), []byte("erin: {memory: lots}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("defaults: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadPolicy(path)
	if err == nil || !strings.Contains(err.Error(), `user-overrides.yaml: erin.memory: want a size like 32g, got "lots"`) {
		t.Fatalf("err = %v", err)
	}
}

func limitUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestDefaultPolicyLimits(t *testing.T) {
	p := DefaultPolicy()
	limitCheckFor(t, p, "anyone", "student", limitsOf(1, 1, 3, 32, 32*limitGiB, 16*limitGiB, 4096), "")
	if g := p.Groups(); len(g) != 0 {
		t.Errorf("Groups() = %v, want none", g)
	}
}

func TestLimitsDescribe(t *testing.T) {
	l := limitsOf(2, 2, -1, 0.5, 32*limitGiB, 512<<20, 4096)
	got := l.Describe()
	wantLines := []string{
		"max_gpu_equivalents: 2.0",
		"max_gpu_slots_per_container: 2",
		"max_containers_per_user: unlimited",
		"max_cpus: 0.5",
		"memory: 32g",
		"shm_size: 512m",
		"pids_limit: 4096",
		"idle_timeout_h: not set (gateway setting)",
		"max_runtime_h: not set (gateway setting)",
		"gpu_hold_after_stop_h: not set (gateway setting)",
		"gpu_idle_threshold: not set (gateway setting)",
		"cpu_idle_threshold: not set (gateway setting)",
	}
	if !reflect.DeepEqual(got, wantLines) {
		t.Errorf("Describe() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
	var none Limits
	for _, line := range none.Describe()[:limitResourceFields] {
		if !strings.HasSuffix(line, ": unlimited") {
			t.Errorf("zero Limits: %q, want unlimited", line)
		}
	}
	odd := Limits{MaxGPUEq: limitPtr(0.25), Memory: limitPtr(int64(1000))}
	if got := odd.Describe(); got[0] != "max_gpu_equivalents: 0.25" || got[4] != "memory: 1000" {
		t.Errorf("Describe() = %v", got)
	}
}

type limitOptDur = Opt[time.Duration]

var limitNever = limitOptDur{Set: true, Never: true}

func limitHours(h float64) limitOptDur {
	return limitOptDur{Set: true, V: time.Duration(h * float64(time.Hour))}
}

func TestPolicyLifecycleKeys(t *testing.T) {
	p := limitMustParse(t, `
defaults:
  idle_timeout_h: 0.5
  max_runtime_h: 24
  gpu_hold_after_stop_h: 0.25
  gpu_idle_threshold: 5
groups:
  researcher:
    idle_timeout_h: 1
    max_runtime_h: 48
    idle_timeout: 1h       # DS01's older spelling: not read, not an error
    cpu_idle_threshold: 2.5
  free:
    idle_timeout_h: null   # never stopped for idleness
    max_runtime_h: unlimited
    gpu_hold_after_stop_h: null
  tests:
    idle_timeout_h: 0.005555555556   # 20 s, as an e2e test writes it
    max_runtime_h: "0.02"            # 72 s, quoted as DS01's float() allows
user_overrides:
  carol: {idle_timeout_h: 2, gpu_idle_threshold: 0}
  dave: {max_runtime_h: 0}
`, "")
	cases := []struct {
		user, group                string
		idle, runtime, hold        limitOptDur
		gpuThreshold, cpuThreshold Opt[float64]
	}{
		// defaults only
		{"u", "", limitHours(0.5), limitHours(24), limitHours(0.25), Opt[float64]{Set: true, V: 5}, Opt[float64]{}},
		// group over defaults, key by key; the unset CPU threshold stays unset
		{"u", "researcher", limitHours(1), limitHours(48), limitHours(0.25), Opt[float64]{Set: true, V: 5}, Opt[float64]{Set: true, V: 2.5}},
		// null beats the defaults' numbers
		{"u", "free", limitNever, limitNever, limitNever, Opt[float64]{Set: true, V: 5}, Opt[float64]{}},
		{"u", "tests", limitOptDur{Set: true, V: 20 * time.Second}, limitOptDur{Set: true, V: 72 * time.Second}, limitHours(0.25), Opt[float64]{Set: true, V: 5}, Opt[float64]{}},
		// the user over the group, and a number over a group's null
		{"carol", "free", limitHours(2), limitNever, limitNever, Opt[float64]{Set: true, V: 0}, Opt[float64]{}},
		// 0 is a value (the gateway reads it as never), not "unset"
		{"dave", "", limitHours(0.5), limitOptDur{Set: true}, limitHours(0.25), Opt[float64]{Set: true, V: 5}, Opt[float64]{}},
	}
	for _, tc := range cases {
		l, _ := p.For(tc.user, tc.group)
		got := []any{l.IdleTimeout, l.MaxRuntime, l.GPUHoldAfterStop, l.GPUIdleThreshold, l.CPUIdleThreshold}
		want := []any{tc.idle, tc.runtime, tc.hold, tc.gpuThreshold, tc.cpuThreshold}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("For(%q, %q) lifecycle = %+v, want %+v", tc.user, tc.group, got, want)
		}
	}

	l, _ := p.For("u", "free")
	got := strings.Join(l.Describe()[limitResourceFields:], "\n")
	want := strings.Join([]string{
		"idle_timeout_h: never",
		"max_runtime_h: unlimited",
		"gpu_hold_after_stop_h: none",
		"gpu_idle_threshold: 5",
		"cpu_idle_threshold: not set (gateway setting)",
	}, "\n")
	if got != want {
		t.Errorf("Describe() =\n%s\nwant\n%s", got, want)
	}
	l, _ = p.For("u", "researcher")
	if got := l.Describe()[limitResourceFields:]; got[0] != "idle_timeout_h: 1" || got[4] != "cpu_idle_threshold: 2.5" {
		t.Errorf("Describe() = %v", got)
	}

	// Without a limits file nothing is set: the gateway's block applies.
	d, _ := DefaultPolicy().For("u", "")
	if d.IdleTimeout.Set || d.MaxRuntime.Set || d.GPUHoldAfterStop.Set || d.GPUIdleThreshold.Set || d.CPUIdleThreshold.Set {
		t.Errorf("DefaultPolicy sets lifecycle keys: %v", d.Describe())
	}
}

func TestPolicyLifecycleBadValues(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"defaults: {idle_timeout_h: -1}\n", `defaults.idle_timeout_h: want hours from 0 to 1e+06 (0.5 = 30 minutes) or null for never, got -1`},
		{"defaults: {max_runtime_h: 24h}\n", `defaults.max_runtime_h: want hours from 0 to 1e+06 (0.5 = 30 minutes) or null for unlimited, got "24h"`},
		{"groups: {g: {gpu_hold_after_stop_h: 1e9}}\n", `groups.g.gpu_hold_after_stop_h: want hours from 0 to 1e+06 (0.5 = 30 minutes) or null for none, got 1e+09`},
		{"defaults: {gpu_idle_threshold: 101}\n", `defaults.gpu_idle_threshold: want a percent from 0 to 100, got 101`},
		{"defaults: {gpu_idle_threshold: null}\n", `defaults.gpu_idle_threshold: want a percent from 0 to 100, got null (leave the key out to use the gateway's setting)`},
		{"user_overrides: {carol: {cpu_idle_threshold: -2}}\n", `user_overrides.carol.cpu_idle_threshold: want a percent >= 0, got -2`},
		{"defaults: {cpu_idle_threshold: lots}\n", `defaults.cpu_idle_threshold: want a percent >= 0, got "lots"`},
	} {
		_, err := ParsePolicy([]byte(tc.src), "")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: err = %v\nwant %s", tc.src, err, tc.want)
		}
	}
	// CPU percent is of one core, so more than 100 is fine.
	p := limitMustParse(t, "defaults: {cpu_idle_threshold: 150}\n", "")
	if l, _ := p.For("u", ""); l.CPUIdleThreshold.V != 150 {
		t.Errorf("cpu_idle_threshold = %v, want 150", l.CPUIdleThreshold)
	}
}
