// Package e2e runs the real ds01-gateway binary against the real Docker
// daemon and the real OpenSSH client. It needs root and a working Docker;
// without them it skips locally and fails in CI (CI=true).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const baseImage = "ds01-base:bookworm"

var (
	// gatewayBin is the binary under test, built once in TestMain.
	gatewayBin string
	// skipReason is set when this machine cannot run the suite (not CI).
	skipReason string
	// suiteHooks prepare what a group of tests shares, once, after the
	// gateway is built: the kube-tagged files register one from init()
	// that gets a Kubernetes cluster (e2e/kube_main_test.go). A hook's
	// error fails the run; a hook that cannot prepare outside CI makes
	// its own tests skip instead. Teardowns run after the tests.
	suiteHooks []func(root string) (teardown func(), err error)
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// A race-built binary sleeps 1 s at exit; the gateway's transfer
	// children would each pay it.
	if _, ok := os.LookupEnv("GORACE"); !ok {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	if reason := unusable(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "e2e: cannot run in CI: %s\n", reason)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: skipping all tests: %s\n", reason)
		skipReason = reason
		return m.Run()
	}

	tmp, err := os.MkdirTemp("", "ds01-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	gatewayBin = filepath.Join(tmp, "ds01-gateway")
	if err := buildGateway(root, gatewayBin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build gateway: %v\n", err)
		return 1
	}
	if err := ensureBaseImage(root); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: base image: %v\n", err)
		return 1
	}
	for _, hook := range suiteHooks {
		teardown, err := hook(root)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 1
		}
		if teardown != nil {
			defer teardown()
		}
	}
	return m.Run()
}

// unusable says why this machine cannot run the suite, or "" if it can.
func unusable() string {
	if os.Geteuid() != 0 {
		return "not root (the gateway chowns workspaces and signals exec PIDs)"
	}
	for _, tool := range []string{"docker", "ssh", "ssh-keygen", "ssh-keyscan", "script"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found in PATH", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.CommandContext(ctx, "docker", "info").Output(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(strings.TrimSpace(string(ee.Stderr))) > 0 {
			return "docker info: " + lastLines(strings.TrimSpace(string(ee.Stderr)), 1)
		}
		return fmt.Sprintf("docker info: %v", err)
	}
	return ""
}

func moduleRoot() (string, error) {
	out, err := exec.Command(goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// buildGateway builds the binary under test. By default with -race, so data
// races in the gateway under real traffic fail the test that triggered them
// (see gw.checkOutput); DS01_E2E_RACE=0 turns that off.
func buildGateway(root, out string) error {
	args := []string{"build", "-o", out}
	if os.Getenv("DS01_E2E_RACE") != "0" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ds01-gateway")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

func ensureBaseImage(root string) error {
	cmd := exec.Command(filepath.Join(root, ".ci", "base-image.sh"), baseImage)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
