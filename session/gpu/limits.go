package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// Limits are one user's effective limits. For the resource limits (the
// pointers) nil means unlimited. The lifecycle values (the Opts) have a
// fallback outside the file, the gateway's lifecycle block, so they say
// whether the file set them at all.
type Limits struct {
	MaxGPUEq             *float64 // max_gpu_equivalents
	MaxSlotsPerContainer *int     // max_gpu_slots_per_container
	MaxContainers        *int     // max_containers_per_user
	MaxCPUs              *float64 // max_cpus
	Memory               *int64   // memory, bytes
	ShmSize              *int64   // shm_size, bytes
	PidsLimit            *int64   // pids_limit

	IdleTimeout      Opt[time.Duration] // idle_timeout_h; Never: never stopped for idleness
	MaxRuntime       Opt[time.Duration] // max_runtime_h; Never: unlimited
	GPUHoldAfterStop Opt[time.Duration] // gpu_hold_after_stop_h; Never: no hold
	GPUIdleThreshold Opt[float64]       // gpu_idle_threshold, percent; never Never
	CPUIdleThreshold Opt[float64]       // cpu_idle_threshold, percent of one core; never Never
}

// Policy is a parsed limits file.
//
// It is read-only after parsing, so one Policy may serve concurrent sessions.
type Policy struct {
	defaults     limitTier
	defaultGroup string
	groups       map[string]limitTier
	// memberOf maps a user to the first group (in file order) whose members:
	// list or groups/<g>.members file names them, as DS01's own parser does.
	memberOf map[string]string
	users    map[string]limitTier
}

// limitTier is one row of the file (defaults, a group or a user override). A
// field whose bit is clear in set was absent and inherits from the tier
// below; a set field with a nil value was null and means unlimited.
type limitTier struct {
	vals Limits
	set  uint
}

// limitField ties a YAML key to its Limits field, so parsing, merging and
// Describe share one table and one order.
type limitField struct {
	key   string
	parse func(path string, v any, l *Limits) error
	// null handles an explicit null (or "unlimited"); nil leaves the zero
	// value, which for the pointer fields means unlimited.
	null func(path string, l *Limits) error
	copy func(dst, src *Limits)
	show func(l Limits) string
}

// limitMinMemory is Docker's floor for --memory; catching it here turns a
// `memory: 32` meant as 32g into a load error instead of failed containers.
const limitMinMemory = 6 << 20

var limitFields = []limitField{
	{
		key: "max_gpu_equivalents",
		parse: func(p string, v any, l *Limits) (err error) {
			l.MaxGPUEq, err = limitParseFloat(p, v, false)
			return err
		},
		copy: func(d, s *Limits) { d.MaxGPUEq = limitClone(s.MaxGPUEq) },
		show: func(l Limits) string { return limitShowFloat(l.MaxGPUEq, true) },
	},
	{
		key: "max_gpu_slots_per_container",
		parse: func(p string, v any, l *Limits) error {
			n, err := limitParseInt(p, v, false)
			if n != nil {
				l.MaxSlotsPerContainer = limitPtr(int(*n))
			}
			return err
		},
		copy: func(d, s *Limits) { d.MaxSlotsPerContainer = limitClone(s.MaxSlotsPerContainer) },
		show: func(l Limits) string { return limitShowInt(l.MaxSlotsPerContainer) },
	},
	{
		key: "max_containers_per_user",
		parse: func(p string, v any, l *Limits) error {
			n, err := limitParseInt(p, v, false)
			if n != nil {
				l.MaxContainers = limitPtr(int(*n))
			}
			return err
		},
		copy: func(d, s *Limits) { d.MaxContainers = limitClone(s.MaxContainers) },
		show: func(l Limits) string { return limitShowInt(l.MaxContainers) },
	},
	{
		key: "max_cpus",
		parse: func(p string, v any, l *Limits) (err error) {
			// Zero CPUs would read as "no limit" to Docker, so it must be positive.
			l.MaxCPUs, err = limitParseFloat(p, v, true)
			return err
		},
		copy: func(d, s *Limits) { d.MaxCPUs = limitClone(s.MaxCPUs) },
		show: func(l Limits) string { return limitShowFloat(l.MaxCPUs, false) },
	},
	{
		key: "memory",
		parse: func(p string, v any, l *Limits) (err error) {
			l.Memory, err = limitParseSize(p, v, limitMinMemory)
			return err
		},
		copy: func(d, s *Limits) { d.Memory = limitClone(s.Memory) },
		show: func(l Limits) string { return limitShowSize(l.Memory) },
	},
	{
		key: "shm_size",
		parse: func(p string, v any, l *Limits) (err error) {
			l.ShmSize, err = limitParseSize(p, v, 1)
			return err
		},
		copy: func(d, s *Limits) { d.ShmSize = limitClone(s.ShmSize) },
		show: func(l Limits) string { return limitShowSize(l.ShmSize) },
	},
	{
		key: "pids_limit",
		parse: func(p string, v any, l *Limits) (err error) {
			// Docker reads 0 and -1 as "no limit"; null says that explicitly.
			l.PidsLimit, err = limitParseInt(p, v, true)
			return err
		},
		copy: func(d, s *Limits) { d.PidsLimit = limitClone(s.PidsLimit) },
		show: func(l Limits) string { return limitShowInt(l.PidsLimit) },
	},
	limitHoursField("idle_timeout_h", "never", func(l *Limits) *Opt[time.Duration] { return &l.IdleTimeout }),
	limitHoursField("max_runtime_h", "unlimited", func(l *Limits) *Opt[time.Duration] { return &l.MaxRuntime }),
	limitHoursField("gpu_hold_after_stop_h", "none", func(l *Limits) *Opt[time.Duration] { return &l.GPUHoldAfterStop }),
	limitPercentField("gpu_idle_threshold", 100, func(l *Limits) *Opt[float64] { return &l.GPUIdleThreshold }),
	limitPercentField("cpu_idle_threshold", 0, func(l *Limits) *Opt[float64] { return &l.CPUIdleThreshold }),
}

// LoadPolicy reads a DS01-format resource-limits.yaml (and the sibling
// groups/*.members files and user-overrides.yaml if present).
// Errors name the file and the YAML path of the bad value.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("limits file: %w", err)
	}
	p, err := ParsePolicy(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("limits file %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses file content; dir is where groups/*.members are looked
// for ("" = none). DS01 keeps per-user overrides in dir/user-overrides.yaml
// too; its entries replace inline user_overrides entries of the same user,
// as in DS01. Errors name the YAML path, e.g. "groups.student.memory: ...".
//
// Unknown keys and sections are ignored, because real DS01 files carry many
// settings the gateway does not enforce; known keys with bad values are errors.
func ParsePolicy(data []byte, dir string) (*Policy, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	top, ok := limitAsMap(doc)
	if doc != nil && !ok {
		return nil, fmt.Errorf("top level: want a mapping with defaults, groups or user_overrides, got %s", limitDescribeValue(doc))
	}
	_, hasDefaults := top["defaults"]
	_, hasGroups := top["groups"]
	_, hasUsers := top["user_overrides"]
	if !hasDefaults && !hasGroups && !hasUsers {
		// An empty or unrelated file is almost always a wrong path; running
		// without limits because of it would go unnoticed.
		return nil, errors.New("no defaults, groups or user_overrides: is this a DS01 resource-limits.yaml?")
	}

	p := &Policy{
		groups:   map[string]limitTier{},
		memberOf: map[string]string{},
		users:    map[string]limitTier{},
	}
	var err error
	if p.defaults, err = limitParseTier("defaults", top["defaults"]); err != nil {
		return nil, err
	}
	// The GPU and container counts a file leaves out of defaults: DS01's
	// own defaults, never unlimited by omission (older DS01 files name
	// these max_mig_instances and the like, which are not read). An
	// explicit null still means unlimited.
	dflt := DefaultPolicy().defaults
	for i := range 3 { // max_gpu_equivalents, max_gpu_slots_per_container, max_containers_per_user
		if p.defaults.set&(1<<i) == 0 {
			limitFields[i].copy(&p.defaults.vals, &dflt.vals)
			p.defaults.set |= 1 << i
		}
	}

	groups, ok := limitAsMap(top["groups"])
	if top["groups"] != nil && !ok {
		return nil, fmt.Errorf("groups: want a mapping of group name to limits, got %s", limitDescribeValue(top["groups"]))
	}
	for _, name := range limitGroupOrder(data, groups) {
		path := "groups." + name
		t, err := limitParseTier(path, groups[name])
		if err != nil {
			return nil, err
		}
		p.groups[name] = t
		inline, err := limitParseMembers(path+".members", groups[name])
		if err != nil {
			return nil, err
		}
		fromFile, err := limitReadMembersFile(dir, name)
		if err != nil {
			return nil, err
		}
		for _, u := range append(inline, fromFile...) {
			if _, taken := p.memberOf[u]; !taken {
				p.memberOf[u] = name
			}
		}
	}

	switch dg := top["default_group"].(type) {
	case nil:
	case string:
		if _, ok := p.groups[dg]; dg != "" && !ok {
			return nil, fmt.Errorf("default_group: %q is not defined under groups (defined: %s)", dg, strings.Join(p.Groups(), ", "))
		}
		p.defaultGroup = dg
	default:
		return nil, fmt.Errorf("default_group: want a group name, got %s", limitDescribeValue(dg))
	}

	if err := p.parseUsers("user_overrides", "user_overrides.", top["user_overrides"]); err != nil {
		return nil, err
	}
	if dir != "" {
		if err := p.readUserOverridesFile(dir); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// DefaultPolicy is DS01's documented defaults only, for when no limits file
// is configured.
func DefaultPolicy() *Policy {
	return &Policy{
		defaults: limitTier{
			vals: Limits{
				MaxGPUEq:             limitPtr(1.0),
				MaxSlotsPerContainer: limitPtr(1),
				MaxContainers:        limitPtr(3),
				MaxCPUs:              limitPtr(32.0),
				Memory:               limitPtr(int64(32 << 30)),
				ShmSize:              limitPtr(int64(16 << 30)),
				PidsLimit:            limitPtr(int64(4096)),
			},
			// The resource limits only: the lifecycle keys stay unset, so
			// the gateway's lifecycle block applies.
			set: 1<<limitResourceFields - 1,
		},
		groups:   map[string]limitTier{},
		memberOf: map[string]string{},
		users:    map[string]limitTier{},
	}
}

// For resolves user's limits, key by key: user_overrides over the group over
// defaults; a key absent from a tier inherits the lower tier's value, and an
// explicit null (or "unlimited") makes it unlimited.
//
// group is the group recorded for the user by the admin ("" if none): it
// wins if the file defines it. A recorded group the file does not define
// (e.g. one removed from the file since) is treated like "", so the user
// still gets a defined tier rather than defaults only: then membership lists
// (members: or groups/<g>.members) decide; otherwise default_group; otherwise
// defaults only. It returns the group actually applied ("" for defaults only).
//
// Unlike DS01's own parser, which skips the group for a user with an
// override, the group still applies under a user's override keys.
func (p *Policy) For(user, group string) (Limits, string) {
	applied := ""
	if _, ok := p.groups[group]; ok && group != "" {
		applied = group
	} else if g, ok := p.memberOf[user]; ok {
		applied = g
	} else {
		applied = p.defaultGroup
	}
	var l Limits
	p.defaults.applyTo(&l)
	if applied != "" {
		t := p.groups[applied]
		t.applyTo(&l)
	}
	if t, ok := p.users[user]; ok {
		t.applyTo(&l)
	}
	return l, applied
}

// Groups lists the group names defined, sorted.
func (p *Policy) Groups() []string {
	names := make([]string, 0, len(p.groups))
	for name := range p.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Describe returns "key: value" lines of the limits in a fixed order, with
// "unlimited" for nil, and for the lifecycle keys "not set (gateway
// setting)" when the file leaves them out. Keys are the YAML keys so an admin can match them
// against the file.
func (l Limits) Describe() []string {
	out := make([]string, 0, len(limitFields))
	for _, f := range limitFields {
		out = append(out, f.key+": "+f.show(l))
	}
	return out
}

// applyTo copies t's set fields over l; fresh pointers keep callers from
// mutating the policy through the returned Limits.
func (t limitTier) applyTo(l *Limits) {
	for i, f := range limitFields {
		if t.set&(1<<i) != 0 {
			f.copy(l, &t.vals)
		}
	}
}

// limitParseTier reads the known keys of one row and ignores the rest. A null row
// (a group with only comments under it) is an empty tier.
func limitParseTier(path string, v any) (limitTier, error) {
	var t limitTier
	if v == nil {
		return t, nil
	}
	m, ok := limitAsMap(v)
	if !ok {
		return t, fmt.Errorf("%s: want a mapping of limits, got %s", path, limitDescribeValue(v))
	}
	for i, f := range limitFields {
		val, ok := m[f.key]
		if !ok {
			continue
		}
		t.set |= 1 << i
		if limitIsUnlimited(val) {
			if f.null != nil {
				if err := f.null(path+"."+f.key, &t.vals); err != nil {
					return t, err
				}
			}
			continue
		}
		if err := f.parse(path+"."+f.key, val, &t.vals); err != nil {
			return t, err
		}
	}
	return t, nil
}

// parseUsers reads a mapping of user name to limits; where names it in
// errors and prefix starts each user's path.
func (p *Policy) parseUsers(where, prefix string, v any) error {
	if v == nil {
		return nil
	}
	m, ok := limitAsMap(v)
	if !ok {
		return fmt.Errorf("%s: want a mapping of user name to limits, got %s", where, limitDescribeValue(v))
	}
	for _, name := range limitSortedKeys(m) {
		t, err := limitParseTier(prefix+name, m[name])
		if err != nil {
			return err
		}
		p.users[name] = t
	}
	return nil
}

// readUserOverridesFile merges DS01's separate user-overrides.yaml, where
// current DS01 installs keep per-user exceptions instead of user_overrides:.
func (p *Policy) readUserOverridesFile(dir string) error {
	const name = "user-overrides.yaml"
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return p.parseUsers(name, name+": ", doc)
}

// limitParseMembers reads a group's inline members: list.
func limitParseMembers(path string, group any) ([]string, error) {
	m, _ := limitAsMap(group)
	v := m["members"]
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a list of user names, got %s", path, limitDescribeValue(v))
	}
	var out []string
	for i, item := range list {
		switch x := item.(type) {
		case string:
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		case int, int64, uint64:
			// An all-digit user name (e.g. a student ID) arrives as a number.
			out = append(out, fmt.Sprint(x))
		default:
			return nil, fmt.Errorf("%s[%d]: want a user name, got %s", path, i, limitDescribeValue(item))
		}
	}
	return out, nil
}

// limitReadMembersFile reads dir/groups/<group>.members: one user name per line,
// '#' starts a comment. A missing file is normal: not every group has one.
func limitReadMembersFile(dir, group string) ([]string, error) {
	if dir == "" || strings.ContainsAny(group, `/\`) {
		return nil, nil
	}
	rel := filepath.Join("groups", group+".members")
	data, err := os.ReadFile(filepath.Join(dir, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out, nil
}

// limitGroupOrder returns the group names in file order, because DS01 resolves a
// user listed in several groups to the first one. Groups the node walk
// cannot see (pulled in by a YAML merge key) follow in sorted order.
func limitGroupOrder(data []byte, groups map[string]any) []string {
	var doc struct {
		Groups yaml.Node `yaml:"groups"`
	}
	var order []string
	seen := map[string]bool{}
	if yaml.Unmarshal(data, &doc) == nil {
		n := &doc.Groups
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				name := n.Content[i].Value
				if _, ok := groups[name]; ok && !seen[name] {
					seen[name] = true
					order = append(order, name)
				}
			}
		}
	}
	for _, name := range limitSortedKeys(groups) {
		if !seen[name] {
			order = append(order, name)
		}
	}
	return order
}

// limitIsUnlimited reports null, or DS01's "unlimited" spelling of it.
func limitIsUnlimited(v any) bool {
	s, ok := v.(string)
	return v == nil || ok && strings.EqualFold(strings.TrimSpace(s), "unlimited")
}

// limitParseFloat accepts ints, floats and numeric strings (DS01's Python reads
// values with float(), so a quoted "2.0" works there too).
func limitParseFloat(path string, v any, positive bool) (*float64, error) {
	f, ok := limitToFloat(v)
	if !ok {
		return nil, fmt.Errorf("%s: want a number or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	if positive && f <= 0 {
		return nil, fmt.Errorf("%s: want a number above 0 or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	if f < 0 {
		return nil, fmt.Errorf("%s: want a number >= 0 or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	return &f, nil
}

func limitParseInt(path string, v any, positive bool) (*int64, error) {
	n, ok := limitToInt(v)
	if !ok {
		return nil, fmt.Errorf("%s: want a whole number or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	if positive && n <= 0 {
		return nil, fmt.Errorf("%s: want a whole number above 0 or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	if n < 0 {
		return nil, fmt.Errorf("%s: want a whole number >= 0 or null for unlimited, got %s", path, limitDescribeValue(v))
	}
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("%s: want at most %d or null for unlimited, got %s", path, math.MaxInt32, limitDescribeValue(v))
	}
	return &n, nil
}

// limitParseSize takes "32g"-style strings (units.RAMInBytes, as Docker's CLI
// does) or a plain number of bytes.
func limitParseSize(path string, v any, min int64) (*int64, error) {
	var n int64
	switch x := v.(type) {
	case string:
		b, err := units.RAMInBytes(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Errorf("%s: want a size like 32g, got %s", path, limitDescribeValue(v))
		}
		n = b
	default:
		b, ok := limitToInt(v)
		if !ok {
			return nil, fmt.Errorf("%s: want a size like 32g, got %s", path, limitDescribeValue(v))
		}
		n = b
	}
	if n < min {
		return nil, fmt.Errorf("%s: want a size of at least %s (like 32g) or null for unlimited, got %s", path, limitShowSize(&min), limitDescribeValue(v))
	}
	return &n, nil
}

func limitToFloat(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

func limitToInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		return int64(x), x <= math.MaxInt64 //nolint:gosec // the bool says whether it fitted
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n, true
		}
	}
	// A whole float such as 2.0 is as good as 2.
	f, ok := limitToFloat(v)
	if !ok || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// limitAsMap accepts both map shapes yaml.v3 produces for a mapping (the second
// when some key is not a string, e.g. an all-digit user name).
func limitAsMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			out[fmt.Sprint(k)] = val
		}
		return out, true
	}
	return nil, false
}

func limitSortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func limitDescribeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return fmt.Sprint(v)
}

func limitShowFloat(f *float64, oneDecimal bool) string {
	if f == nil {
		return "unlimited"
	}
	if oneDecimal && *f == math.Trunc(*f) {
		return strconv.FormatFloat(*f, 'f', 1, 64)
	}
	return strconv.FormatFloat(*f, 'f', -1, 64)
}

func limitShowInt[T int | int64](n *T) string {
	if n == nil {
		return "unlimited"
	}
	return strconv.FormatInt(int64(*n), 10)
}

// limitShowSize writes bytes in the file's own notation (32g, 512m) so the
// output can be compared with, or pasted into, the limits file.
func limitShowSize(n *int64) string {
	if n == nil {
		return "unlimited"
	}
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if *n != 0 && *n%u.size == 0 {
			return strconv.FormatInt(*n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(*n, 10)
}

func limitPtr[T any](v T) *T { return &v }

func limitClone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
