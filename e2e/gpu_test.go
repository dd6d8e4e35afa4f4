package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ds01Limits is a resource-limits.yaml in DS01's own format, with the
// sections and keys the gateway does not enforce, read as is.
const ds01Limits = `# DS01 GPU Server - Resource Limits Configuration
defaults:
  max_gpu_equivalents: 1.0
  max_gpu_slots_per_container: 1
  max_cpus: 2
  memory: 2g
  shm_size: 256m
  max_containers_per_user: 3
  pids_limit: 512
  max_runtime_h: 24
  idle_timeout_h: 0.5
  gpu_hold_after_stop_h: 0.25
default_group: student
enforcement:
  aggregate_limits: true
  cgroup_driver: systemd
groups:
  student:
    allow_full_gpu: true
    aggregate:
      cpu_quota: "9600%"
      memory_max: "96G"
  researcher:
    max_gpu_equivalents: 2.0
    max_gpu_slots_per_container: 2
    memory: 4g
    idle_timeout: 1h
user_overrides:
  nina:
    max_containers_per_user: 1
gpu_allocation:
  mig_instances_per_gpu: 4
policies:
  high_demand_threshold: 0.8
`

// gpuEnv reads the GPU a session's container got, from inside it.
const gpuEnv = `echo "gpus=$NVIDIA_VISIBLE_DEVICES cuda=$CUDA_VISIBLE_DEVICES order=$CUDA_DEVICE_ORDER"`

func visible(out string) string {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, "gpus="); ok {
			return v
		}
	}
	return ""
}

// TestGPUs: a fake inventory of two GPUs, shared by users who each may
// hold one (DS01's defaults, from a DS01 limits file).
func TestGPUs(t *testing.T) {
	limits := filepath.Join(t.TempDir(), "resource-limits.yaml")
	if err := os.WriteFile(limits, []byte(ds01Limits), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOpts{RetireAfter: "1s", Extra: map[string]string{
		"fake_gpus": "2", "limits_file": limits, "watch_interval": "500ms", "gpu_queue_timeout": "2m",
	}})
	ann := g.addUser(t, "ann", 20401, 20401)
	ben := g.addUser(t, "ben", 20402, 20402)
	cat := g.addUser(t, "cat", 20403, 20403)
	rex := g.addUser(t, "rex", 20404, 20404, "--group", "researcher")
	nina := g.addUser(t, "nina", 20405, 20405)

	holdAnn := g.startSSH(t, ann, "p", gpuEnv+"; sleep 300")
	holdAnn.waitOutput(t, "gpus=GPU-", timeoutLong)
	holdBen := g.startSSH(t, ben, "p", gpuEnv+"; sleep 300")
	holdBen.waitOutput(t, "gpus=GPU-", timeoutLong)
	annGPU, benGPU := visible(holdAnn.out.String()), visible(holdBen.out.String())

	t.Run("two users get different GPUs", func(t *testing.T) {
		if annGPU == "" || annGPU == benGPU {
			t.Fatalf("ann has %q, ben has %q", annGPU, benGPU)
		}
		if !strings.Contains(holdAnn.out.String(), "cuda="+annGPU) || !strings.Contains(holdAnn.out.String(), "order=PCI_BUS_ID") {
			t.Errorf("environment: %q", holdAnn.out.String())
		}
		if !strings.Contains(holdAnn.err.String(), "allocated, 1.0 of 1.0 gpueq in use") {
			t.Errorf("no GPU notice: %q", holdAnn.err.String())
		}
		id := containers(t, ann.uid, "p")[0]
		if got := docker(t, "inspect", "-f", `{{index .Config.Labels "ds01.gpu.uuids"}} {{index .Config.Labels "ds01.gpu.gpueq"}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}`, id); strings.TrimSpace(got) != annGPU+" 1.000 2147483648 512" {
			t.Errorf("labels and limits from the DS01 file: %q", got)
		}
	})

	t.Run("cpu never waits", func(t *testing.T) {
		start := time.Now()
		out := g.mustSSH(t, cat, "q+cpu", gpuEnv)
		if visible(out) != "void" {
			t.Errorf("+cpu container sees GPUs: %q", out)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("+cpu took %s", d)
		}
	})

	t.Run("over quota is refused with the reason", func(t *testing.T) {
		r := g.ssh(t, ben, "other", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "you hold 1.0 of 1.0 GPU-equivalents") {
			t.Errorf("second GPU container for ben: %s", r)
		}
		r = g.ssh(t, cat, "big+gpus=2", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "max_gpu_slots_per_container") {
			t.Errorf("two GPUs for a student: %s", r)
		}
		// A per-user override in the limits file: nina may run one container.
		hold := g.startSSH(t, nina, "one+cpu", "echo up; sleep 300")
		hold.waitOutput(t, "up", timeoutLong)
		r = g.ssh(t, nina, "two+cpu", "true")
		if r.code == 0 || !strings.Contains(r.stderr, "you run 1 of 1 containers") {
			t.Errorf("nina's second container: %s", r)
		}
		hold.stop()
	})

	// The sessions that take over the GPUs below must outlive their
	// subtests: the kill -9 subtest counts on their containers.
	outer := t
	t.Run("a waiting request gets the slot a retire frees", func(t *testing.T) {
		wait := g.startSSH(outer, cat, "p", gpuEnv+"; sleep 300")
		wait.waitErr(t, "position 1 of 1", timeoutLong)
		var st gpuStatus
		if err := json.Unmarshal([]byte(g.mustSSH(t, ann, "ds01", "gpu-status", "--format", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Slots) != 2 || st.Slots[0].User == nil || st.Slots[1].User == nil || len(st.Queue) != 1 || st.Queue[0].User != "cat" {
			t.Errorf("gpu-status: %+v", st)
		}
		holdAnn.stop() // ann leaves; after the 1 s grace her GPU goes to cat
		wait.waitOutput(t, "gpus="+annGPU, timeoutShort)
	})

	t.Run("docker rm -f frees the slot", func(t *testing.T) {
		wait := g.startSSH(outer, ann, "p", gpuEnv+"; sleep 300")
		wait.waitErr(t, "position 1", timeoutLong)
		docker(t, "rm", "-f", containers(t, ben.uid, "p")[0])
		wait.waitOutput(t, "gpus="+benGPU, timeoutShort)
		select {
		case <-holdBen.done:
		case <-time.After(timeoutShort):
			t.Error("ben's session outlived his container")
		}
	})

	t.Run("kill -9 and restart keep the living and free the dead", func(t *testing.T) {
		// Now ann holds benGPU and cat holds annGPU.
		g.kill9(t)
		docker(t, "rm", "-f", containers(t, ann.uid, "p")[0])
		g.start(t)
		var st struct {
			Slots []struct {
				UUID string  `json:"uuid"`
				User *string `json:"user"`
			} `json:"slots"`
		}
		if err := json.Unmarshal([]byte(g.mustSSH(t, cat, "ds01", "gpu-status", "--format", "json")), &st); err != nil {
			t.Fatal(err)
		}
		held := map[string]string{}
		for _, s := range st.Slots {
			if s.User != nil {
				held[s.UUID] = *s.User
			}
		}
		if len(held) != 1 || held[annGPU] != "cat" {
			t.Errorf("after restart: %v, want only %s held by cat", held, annGPU)
		}
		// The freed one is handed out again, and only once.
		out := g.mustSSH(t, ben, "p", gpuEnv)
		if visible(out) != benGPU {
			t.Errorf("ben got %q, want the freed %s", out, benGPU)
		}
	})

	t.Run("a researcher may have two", func(t *testing.T) {
		// cat's container, adopted after the restart with nobody
		// connected, may have retired on its 1 s grace already.
		if r := g.ssh(t, cat, "ds01", "container-retire", "p"); r.code != 0 && !strings.Contains(r.stderr, "no running container") {
			t.Fatalf("container-retire p: %s", r)
		}
		waitGone := time.Now().Add(timeoutShort)
		for len(containers(t, ben.uid, "p")) > 0 && time.Now().Before(waitGone) {
			time.Sleep(200 * time.Millisecond) // ben's grace
		}
		out := g.mustSSH(t, rex, "big+gpus=2", gpuEnv)
		if v := visible(out); strings.Count(v, "GPU-") != 2 {
			t.Errorf("researcher with +gpus=2: %q", out)
		}
		lim := g.mustSSH(t, rex, "ds01", "check-limits")
		if !strings.Contains(lim, "group: researcher") || !strings.Contains(lim, "max_gpu_equivalents: 2") {
			t.Errorf("check-limits: %q", lim)
		}
	})
}

// TestNoGPUs: on this host there is no NVIDIA library; the gateway serves
// without GPUs and says so, rather than failing.
func TestNoGPUs(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "noa", 20406, 20406)
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"); err == nil {
		t.Skip("this host has the NVIDIA library")
	}
	if r := g.ssh(t, u, "ds01", "gpu-status"); r.code != 0 || !strings.Contains(r.stderr, "no GPUs") {
		t.Errorf("gpu-status: %s", r)
	}
	if out := g.mustSSH(t, u, "p", gpuEnv); visible(out) != "void" {
		t.Errorf("default login on a host without GPUs: %q", out)
	}
	if r := g.ssh(t, u, "p2+gpus=1", "true"); r.code == 0 || !strings.Contains(r.stderr, "no GPUs") {
		t.Errorf("+gpus=1 without GPUs: %s", r)
	}
	if !strings.Contains(g.out.String(), "no GPUs") {
		t.Error("the gateway's log does not say it found no GPUs")
	}
}

// gpuStatus is `ds01 gpu-status --format json`, the parts read here.
type gpuStatus struct {
	Slots []struct {
		UUID string  `json:"uuid"`
		User *string `json:"user"`
	} `json:"slots"`
	Queue []struct {
		User     string `json:"user"`
		Position int    `json:"position"`
	} `json:"queue"`
}
