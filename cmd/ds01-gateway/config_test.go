package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigOverridesDefaults(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, `
listen: 0.0.0.0:22
data_dir: /var/lib/ds01
workspace_root: /home/{user}/workspace
base_image: debian:bookworm
retire_after: 90s
command_login: admin
limits:
  memory: 8g
  cpus: 2.5
  pids_limit: 512
  shm_size: 1g
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:22" || cfg.DataDir != "/var/lib/ds01" || cfg.BaseImage != "debian:bookworm" ||
		cfg.RetireAfter.Duration != 90*time.Second || cfg.CommandLogin != "admin" {
		t.Errorf("top-level keys not applied: %+v", cfg)
	}
	if cfg.Limits.Memory != 8<<30 || cfg.Limits.CPUs != 2.5 || cfg.Limits.PidsLimit != 512 || cfg.Limits.ShmSize != 1<<30 {
		t.Errorf("limits not applied: %+v", cfg.Limits)
	}
	if cfg.HandshakeTimeout.Duration != 30*time.Second {
		t.Errorf("unset key lost its default: %v", cfg.HandshakeTimeout)
	}
}

func TestEmptyConfigIsDefaults(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
	if cfg.Listen != "127.0.0.1:2222" || cfg.CommandLogin != "ds01" {
		t.Errorf("defaults: %+v", cfg)
	}
}

// Every rejection names the option's path, so an admin finds the line.
func TestConfigErrorsNameTheOption(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"lissten: x", "lissten: unknown option"},
		{"limits:\n  memroy: 1g", "limits.memroy: unknown option"},
		{"retire_after: soon", "retire_after: want a duration"},
		{"limits:\n  memory: lots", "limits.memory: want a size"},
		{"max_auth_tries: many", "max_auth_tries:"},
		{"limits: 5", "limits: want a mapping"},
		{"listen: nohost", "listen: want host:port"},
		{"workspace_root: /srv/shared", "workspace_root: must contain {user}"},
		{"workspace_root: rel/{user}", "workspace_root: must be an absolute path"},
		{"retire_after: -1s", "retire_after: must not be negative"},
		{"command_login: Bad", "command_login:"},
		{"ciphers: [rc4]", "ciphers[0]: unknown cipher"},
		{"ciphers: [aes128-gcm@openssh.com, aes128-cbc]", "ciphers[1]: unknown cipher \"aes128-cbc\""},
		{"macs: [hmac-sha1-96]", "macs[0]: unknown mac"},
		{"kex_algorithms: [diffie-hellman-group14-sha1]", "kex_algorithms[0]: unknown kex algorithm"},
		{"host_key_algorithms: [ssh-rsa]", "host_key_algorithms[0]: unknown host key algorithm"},
		{"base_image: 'a b'", "base_image:"},
		{"log_level: loud", "log_level:"},
		{"network_pool: 10.0.0.0/30", "network_pool:"},
		{"network_pool: fd00::/64", "network_pool:"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got error %v, want it to contain %q", tc.body, err, tc.want)
		}
	}
}

func TestParseAllowsFlagsAfterPositionals(t *testing.T) {
	for _, args := range [][]string{
		{"alice", "--uid", "1001", "--key-file", "k.pub"},
		{"--uid", "1001", "alice", "--key-file", "k.pub"},
	} {
		fs := newTestFlagSet()
		pos, err := parse(fs.fs, args)
		if err != nil || len(pos) != 1 || pos[0] != "alice" || *fs.uid != 1001 || *fs.key != "k.pub" {
			t.Errorf("%v: pos=%v uid=%d key=%q err=%v", args, pos, *fs.uid, *fs.key, err)
		}
	}
}

func TestBuildCacheMax(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, "build_cache_max: 20g\n"))
	if err != nil || cfg.Validate() != nil || cfg.BuildCacheMax != 20<<30 {
		t.Fatalf("build_cache_max: 20g = %d, %v", cfg.BuildCacheMax, err)
	}
	if cfg, _ := loadConfig(writeConfig(t, "")); cfg.BuildCacheMax != 0 {
		t.Errorf("default build_cache_max = %d, want 0 (off)", cfg.BuildCacheMax)
	}
	if _, err := loadConfig(writeConfig(t, "build_cache_max: lots\n")); err == nil || !strings.Contains(err.Error(), "size like") {
		t.Errorf("build_cache_max: lots: %v", err)
	}
}
