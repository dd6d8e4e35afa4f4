package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"go.yaml.in/yaml/v3"

	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/hostusers"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/hostfw"
	"github.com/ds01/ds01-gateway/session/image"
)

// Config is the gateway's configuration file (YAML). Every key is
// optional; defaults are in defaultConfig.
type Config struct {
	Listen            string   `yaml:"listen"`
	DataDir           string   `yaml:"data_dir"`
	WorkspaceRoot     string   `yaml:"workspace_root"`
	BaseImage         string   `yaml:"base_image"`
	AllowedBases      []string `yaml:"allowed_bases"`
	BuildTimeout      Duration `yaml:"build_timeout"`
	PublicName        string   `yaml:"public_name"`
	RetireAfter       Duration `yaml:"retire_after"`
	CommandLogin      string   `yaml:"command_login"`
	AdminGroup        string   `yaml:"admin_group"` // its members are admins (admin.go); "" for none
	HandshakeTimeout  Duration `yaml:"handshake_timeout"`
	MaxAuthTries      int      `yaml:"max_auth_tries"`
	KeepaliveInterval Duration `yaml:"keepalive_interval"`
	KeepaliveCount    int      `yaml:"keepalive_count"`
	ForwardAllow      []string `yaml:"forward_allow"`
	Ciphers           []string `yaml:"ciphers"`
	MACs              []string `yaml:"macs"`
	KexAlgorithms     []string `yaml:"kex_algorithms"`
	HostKeyAlgorithms []string `yaml:"host_key_algorithms"`
	LogLevel          string   `yaml:"log_level"`
	NetworkPool       string   `yaml:"network_pool"`
	Limits            Limits   `yaml:"limits"`

	// HostFirewall keeps the pool's containers off the host's own
	// services, but for HostFirewallAllow (session/hostfw).
	HostFirewall      bool     `yaml:"host_firewall"`
	HostFirewallAllow []string `yaml:"host_firewall_allow"`
	// TransferTimeout bounds one rsync transfer container.
	TransferTimeout Duration `yaml:"transfer_timeout"`

	// BuildCacheMax bounds the engine's build cache; 0 leaves it alone.
	BuildCacheMax Size `yaml:"build_cache_max"`

	// GPUs: NVML's inventory unless fake_gpus or fake_inventory is set.
	FakeGPUs        int       `yaml:"fake_gpus"`
	FakeInventory   []FakeGPU `yaml:"fake_inventory"`
	LimitsFile      string    `yaml:"limits_file"`
	GPUQueueTimeout Duration  `yaml:"gpu_queue_timeout"`
	WatchInterval   Duration  `yaml:"watch_interval"`

	// NetworkLinger keeps a project's network holder this long after its
	// last use, so its next cold start skips Docker's network setup
	// (session/holders.go); 0 turns holders off and removes them at start.
	// NetworkHoldersMax caps their number.
	NetworkLinger     Duration `yaml:"network_linger"`
	NetworkHoldersMax int      `yaml:"network_holders_max"`

	// FakeGPUUtilizationDir holds a file per fake GPU index with its
	// utilisation in percent; "" is <data_dir>/fake-gpu-utilization.
	FakeGPUUtilizationDir string `yaml:"fake_gpu_utilization_dir"`

	// Per-connection and pre-authentication bounds (OpenSSH's MaxSessions,
	// MaxStartups and PerSourceMaxStartups).
	MaxSessions          int `yaml:"max_sessions"`
	MaxForwardChannels   int `yaml:"max_forward_channels"`
	MaxStartups          int `yaml:"max_startups"`
	MaxStartupsPerSource int `yaml:"max_startups_per_source"`

	// Lifecycle: detached and idle containers, maximum runtime (lifecycle.go).
	Lifecycle Lifecycle `yaml:"lifecycle"`

	// Running as a service (service.go): the events file (JSON lines in
	// DS01's envelope; "" for none), the log's format, and how long a
	// shutdown waits for open sessions.
	EventsFile      string   `yaml:"events_file"`
	LogFormat       string   `yaml:"log_format"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// UsersFrom: "store" (users and keys registered with `user add`) or
	// "host" (the host's accounts and their ~/.ssh/authorized_keys; see
	// hostusers). AllowedGroups and MinUID decide which host accounts may
	// log in.
	UsersFrom     string   `yaml:"users_from"`
	AllowedGroups []string `yaml:"allowed_groups"`
	MinUID        int      `yaml:"min_uid"`
	// MetricsListen serves Prometheus' /metrics there; "" is off (metrics.go).
	MetricsListen string `yaml:"metrics_listen"`

	// Runtime is where project containers run: "docker" (this host) or
	// "kubernetes" (pods, configured by Kubernetes; config_kube.go).
	Runtime    string     `yaml:"runtime"`
	Kubernetes KubeConfig `yaml:"kubernetes"`
}

// FakeGPU is one GPU of a fake inventory, for hosts without GPUs.
type FakeGPU struct {
	Name   string `yaml:"name"`
	Memory Size   `yaml:"memory"`
	// MIG lists the compute slices of each MIG instance; none means the
	// GPU is one full slot.
	MIG []int `yaml:"mig"`
}

// UnmarshalYAML decodes strictly, like the rest of the file.
func (f *FakeGPU) UnmarshalYAML(n *yaml.Node) error {
	type plain FakeGPU
	return decodeStrict(n, reflect.ValueOf((*plain)(f)).Elem(), "")
}

// Limits apply to every project container.
type Limits struct {
	Memory    Size    `yaml:"memory"`
	CPUs      float64 `yaml:"cpus"`
	PidsLimit int64   `yaml:"pids_limit"`
	ShmSize   Size    `yaml:"shm_size"`
}

// Duration is a Go duration string in YAML ("10s", "5m").
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration like 10s or 5m, got %q", n.Value)
	}
	d.Duration = v
	return nil
}

// Size is a byte size in YAML ("32g", "512m", or plain bytes).
type Size int64

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := units.RAMInBytes(n.Value)
	if err != nil {
		return fmt.Errorf("want a size like 512m or 32g, got %q", n.Value)
	}
	*s = Size(v)
	return nil
}

// defaultConfig follows DS01's defaults (resource-limits.yaml) where it has
// them.
func defaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:2222",
		DataDir:           "./.ds01",
		WorkspaceRoot:     "{home}/workspace",
		BaseImage:         "ds01-base:bookworm",
		BuildTimeout:      Duration{30 * time.Minute},
		GPUQueueTimeout:   Duration{30 * time.Minute},
		WatchInterval:     Duration{10 * time.Second},
		RetireAfter:       Duration{10 * time.Second},
		NetworkLinger:     Duration{24 * time.Hour},
		NetworkHoldersMax: 200,
		CommandLogin:      "ds01",
		AdminGroup:        "admin",
		HandshakeTimeout:  Duration{30 * time.Second},
		MaxAuthTries:      6,
		KeepaliveInterval: Duration{15 * time.Second},
		KeepaliveCount:    3,
		LogLevel:          "info",
		NetworkPool:       "10.201.0.0/16",
		HostFirewall:      true,
		TransferTimeout:   Duration{24 * time.Hour},
		Limits: Limits{
			Memory:    32 << 30,
			CPUs:      32,
			PidsLimit: 4096,
			ShmSize:   16 << 30,
		},

		MaxSessions:          gateway.DefaultMaxSessions,
		MaxForwardChannels:   gateway.DefaultMaxForwardChannels,
		MaxStartups:          gateway.DefaultMaxStartups,
		MaxStartupsPerSource: gateway.DefaultMaxStartupsPerSource,
		Lifecycle:            defaultLifecycle(),

		LogFormat:       "text",
		ShutdownTimeout: Duration{30 * time.Second},
		UsersFrom:       "store",
		MinUID:          hostusers.DefaultMinUID,
		Runtime:         runtimeDocker,
		Kubernetes:      defaultKubeConfig(),
	}
}

// loadConfig reads path over the defaults. Unknown keys and bad values are
// errors that name the option's path.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return cfg, nil // an empty file means all defaults
	}
	if err := decodeStrict(doc.Content[0], reflect.ValueOf(&cfg).Elem(), ""); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// decodeStrict decodes a mapping node into a struct, recursing into nested
// structs, so every error can say which option it is about.
func decodeStrict(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: want a mapping of options", orRoot(path))
	}
	fields := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" {
			fields[tag] = v.Field(i)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i].Value, n.Content[i+1]
		p := k
		if path != "" {
			p = path + "." + k
		}
		f, ok := fields[k]
		if !ok {
			return fmt.Errorf("%s: unknown option", p)
		}
		if f.Kind() == reflect.Struct && !f.Addr().Type().Implements(unmarshalerType) {
			if err := decodeStrict(val, f, p); err != nil {
				return err
			}
			continue
		}
		if err := val.Decode(f.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %s", p, strings.TrimPrefix(cleanYAMLErr(err), "yaml: "))
		}
	}
	return nil
}

func cleanYAMLErr(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return te.Errors[0]
	}
	return err.Error()
}

func orRoot(p string) string {
	if p == "" {
		return "config"
	}
	return p
}

// Validate checks values that decode but make no sense.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: want host:port, got %q", c.Listen)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	if !strings.Contains(c.WorkspaceRoot, "{user}") && !strings.Contains(c.WorkspaceRoot, "{home}") {
		return fmt.Errorf("workspace_root: must contain {user} or {home} so users get separate workspaces, got %q", c.WorkspaceRoot)
	}
	if !strings.HasPrefix(c.WorkspaceRoot, "/") && !strings.HasPrefix(c.WorkspaceRoot, "{home}") {
		return fmt.Errorf("workspace_root: must be an absolute path, got %q", c.WorkspaceRoot)
	}
	if c.BaseImage == "" || strings.ContainsAny(c.BaseImage, " \t\n\"'$`\\") {
		return fmt.Errorf("base_image: want an image reference like debian:bookworm, got %q", c.BaseImage)
	}
	if err := image.ValidateRef(c.BaseImage); err != nil {
		return fmt.Errorf("base_image: %w", err)
	}
	for i, p := range c.AllowedBases {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("allowed_bases[%d]: want a glob pattern like pytorch/pytorch:*, got %q", i, p)
		}
	}
	if len(c.AllowedBases) > 0 && !image.BaseAllowed(c.BaseImage, c.AllowedBases) {
		return fmt.Errorf("allowed_bases: must allow base_image %q, or no new project could build", c.BaseImage)
	}
	if c.BuildTimeout.Duration < 0 {
		return errors.New("build_timeout: must not be negative (0 means no limit)")
	}
	if c.BuildCacheMax < 0 {
		return errors.New("build_cache_max: must not be negative (0 leaves the build cache alone)")
	}
	if c.PublicName != "" && strings.ContainsAny(c.PublicName, " \t\n@/") {
		return fmt.Errorf("public_name: want a host name, got %q", c.PublicName)
	}
	if c.FakeGPUs < 0 || c.FakeGPUs > 64 {
		return fmt.Errorf("fake_gpus: want 0 to 64, got %d", c.FakeGPUs)
	}
	if c.FakeGPUs > 0 && len(c.FakeInventory) > 0 {
		return errors.New("fake_gpus and fake_inventory: set one of them")
	}
	if c.GPUQueueTimeout.Duration < 0 {
		return errors.New("gpu_queue_timeout: must not be negative (0 means wait as long as it takes)")
	}
	if c.WatchInterval.Duration < 0 {
		return errors.New("watch_interval: must not be negative (0 turns the watch off)")
	}
	if c.RetireAfter.Duration < 0 {
		return errors.New("retire_after: must not be negative")
	}
	if c.NetworkLinger.Duration < 0 {
		return errors.New("network_linger: must not be negative (0 turns network holders off)")
	}
	if c.NetworkHoldersMax < 1 || c.NetworkHoldersMax > 10000 {
		return fmt.Errorf("network_holders_max: want 1 to 10000, got %d (network_linger: 0 turns holders off)", c.NetworkHoldersMax)
	}
	if err := session.ValidateProject(c.CommandLogin, ""); err != nil {
		return fmt.Errorf("command_login: %w", err)
	}
	// A host group (users_from: host) may be named as the directory
	// likes ("Lab-Admins"); only what no group name holds is refused.
	if c.AdminGroup != "" && (len(c.AdminGroup) > 64 || strings.ContainsAny(c.AdminGroup, " :,\t\n/")) {
		return fmt.Errorf("admin_group: want a group name (or \"\" for no admins), got %q", c.AdminGroup)
	}
	if c.HandshakeTimeout.Duration <= 0 {
		return errors.New("handshake_timeout: must be positive")
	}
	if c.KeepaliveInterval.Duration < 0 {
		return errors.New("keepalive_interval: must not be negative (0 turns keepalives off)")
	}
	if c.KeepaliveCount < 1 {
		return errors.New("keepalive_count: must be at least 1")
	}
	if c.MaxAuthTries < 1 {
		return errors.New("max_auth_tries: must be at least 1")
	}
	if err := c.validateConnLimits(); err != nil {
		return err
	}
	if err := c.validateAccounts(); err != nil {
		return err
	}
	if err := c.Lifecycle.validate(); err != nil {
		return err
	}
	if err := c.validateMetrics(); err != nil {
		return err
	}
	if err := c.validateRuntime(); err != nil {
		return err
	}
	for i, a := range c.ForwardAllow {
		if a == "" || strings.ContainsAny(a, " /") {
			return fmt.Errorf("forward_allow[%d]: want host or host:port, got %q", i, a)
		}
	}
	for _, o := range []struct {
		name  string
		names []string
	}{{"ciphers", c.Ciphers}, {"macs", c.MACs}, {"kex_algorithms", c.KexAlgorithms}, {"host_key_algorithms", c.HostKeyAlgorithms}} {
		if err := gateway.CheckAlgorithms(o.name, o.names); err != nil {
			return err
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: want debug, info, warn or error, got %q", c.LogLevel)
	}
	if p, err := netip.ParsePrefix(c.NetworkPool); err != nil || !p.Addr().Is4() || p.Bits() > 26 {
		return fmt.Errorf("network_pool: want an IPv4 prefix of /26 or larger, like 10.201.0.0/16, got %q", c.NetworkPool)
	}
	for i, p := range c.HostFirewallAllow {
		if _, err := hostfw.ParsePort(p); err != nil {
			return fmt.Errorf("host_firewall_allow[%d]: %w", i, err)
		}
	}
	if c.TransferTimeout.Duration < 0 {
		return errors.New("transfer_timeout: must not be negative (0 means no limit)")
	}
	if c.Limits.Memory < 0 || c.Limits.ShmSize < 0 || c.Limits.PidsLimit < 0 || c.Limits.CPUs < 0 {
		return errors.New("limits: values must not be negative")
	}
	if c.Limits.Memory > 0 && c.Limits.Memory < 6<<20 {
		return errors.New("limits.memory: Docker needs at least 6m")
	}
	return c.validateService()
}

// validateAccounts checks users_from, allowed_groups and min_uid.
func (c *Config) validateAccounts() error {
	switch c.UsersFrom {
	case "store", "host":
	default:
		return fmt.Errorf("users_from: want store or host, got %q", c.UsersFrom)
	}
	if c.MinUID < 1 {
		return fmt.Errorf("min_uid: must be at least 1 (uid 0 never logs in), got %d", c.MinUID)
	}
	if len(c.AllowedGroups) > 0 && c.UsersFrom != "host" {
		return errors.New("allowed_groups: applies to users_from: host only")
	}
	for i, g := range c.AllowedGroups {
		if g == "" || strings.ContainsAny(g, " :,\t\n") {
			return fmt.Errorf("allowed_groups[%d]: want a group name, got %q", i, g)
		}
	}
	return nil
}

// validateConnLimits checks the per-connection and pre-authentication
// bounds.
func (c *Config) validateConnLimits() error {
	for _, o := range []struct {
		name string
		v    int
	}{
		{"max_sessions", c.MaxSessions},
		{"max_forward_channels", c.MaxForwardChannels},
		{"max_startups", c.MaxStartups},
		{"max_startups_per_source", c.MaxStartupsPerSource},
	} {
		if o.v < 1 {
			return fmt.Errorf("%s: must be at least 1, got %d", o.name, o.v)
		}
	}
	if c.MaxStartupsPerSource > c.MaxStartups {
		return fmt.Errorf("max_startups_per_source: must not exceed max_startups (%d), got %d", c.MaxStartups, c.MaxStartupsPerSource)
	}
	return nil
}

// publicName is the host name hints tell users to ssh to: public_name, or
// this host's name.
func (c *Config) publicName() string {
	if c.PublicName != "" {
		return c.PublicName
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "ds01"
}

// absDataDir resolves data_dir against the working directory once, so a
// later chdir cannot move the store.
func (c *Config) absDataDir() (string, error) {
	return filepath.Abs(c.DataDir)
}

// nanoCPUs clamps the CPU limit to the host: Docker refuses more.
func (l Limits) nanoCPUs() int64 {
	cpus := l.CPUs
	if n := float64(runtime.NumCPU()); cpus > n {
		cpus = n
	}
	return int64(cpus * 1e9)
}
