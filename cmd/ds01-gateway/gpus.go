package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/kube"
)

// gpus is what serve hands the session manager about GPUs.
type gpus struct {
	inv    gpu.Inventory // nil: none
	alloc  *gpu.Allocator
	policy *gpu.Policy
}

// openGPUs finds the inventory (the cluster's nodes with runtime:
// kubernetes; else fake when the config says so, else NVML: a host without
// the NVIDIA library simply has no GPUs) and the limits. kc is the
// cluster's client with kubernetes, else nil.
func openGPUs(ctx context.Context, cfg Config, kc *kube.Client, log *slog.Logger) (*gpus, error) {
	g := &gpus{policy: gpu.DefaultPolicy()}
	if cfg.LimitsFile != "" {
		p, err := gpu.LoadPolicy(cfg.LimitsFile)
		if err != nil {
			return nil, err
		}
		g.policy = p
		log.Info("limits file", "path", cfg.LimitsFile, "groups", p.Groups())
	}
	var fakeOpts []gpu.FakeOption
	if cfg.kubernetes() && (cfg.FakeGPUs > 0 || len(cfg.FakeInventory) > 0) {
		log.Warn("runtime kubernetes: fake_gpus and fake_inventory are ignored; the nodes' capacity is the inventory")
	}
	if !cfg.kubernetes() && (cfg.FakeGPUs > 0 || len(cfg.FakeInventory) > 0) {
		dir, err := fakeUtilizationDir(cfg)
		if err != nil {
			return nil, err
		}
		fakeOpts = append(fakeOpts, gpu.FakeUtilizationDir(dir))
	}
	switch {
	case cfg.kubernetes():
		if kc == nil {
			return nil, errNoKube
		}
		kcfg, err := cfg.kubeRuntimeConfig()
		if err != nil {
			return nil, err
		}
		// Read once: the allocator keeps these slots until a restart
		// (a reload does not change them; see kube.Inventory).
		g.inv = kube.NewInventory(kc, kcfg)
	case cfg.FakeGPUs > 0:
		g.inv = gpu.FakeN(cfg.FakeGPUs, fakeOpts...)
	case len(cfg.FakeInventory) > 0:
		fakes := make([]gpu.FakeGPU, len(cfg.FakeInventory))
		for i, f := range cfg.FakeInventory {
			fakes[i] = gpu.FakeGPU{Name: f.Name, MemoryMiB: uint64(f.Memory) >> 20, MIG: f.MIG} //nolint:gosec // a validated size, never negative
		}
		inv, err := gpu.NewFake(fakes, fakeOpts...)
		if err != nil {
			return nil, fmt.Errorf("fake_inventory: %w", err)
		}
		g.inv = inv
	default:
		inv, err := gpu.NewNVML()
		switch {
		case errors.Is(err, gpu.ErrNoNVML):
			log.Info("no GPUs: " + err.Error())
			return g, nil
		case err != nil:
			// A broken driver must not lock every user out: serve
			// without GPUs, loudly.
			log.Error("NVML failed; serving without GPUs", "err", err)
			return g, nil
		}
		g.inv = inv
	}
	slots, err := g.inv.Slots(ctx)
	if err != nil {
		g.inv.Close()
		return nil, fmt.Errorf("gpu inventory: %w", err)
	}
	g.alloc = gpu.NewAllocator(slots)
	log.Info("gpu inventory", "slots", len(slots), "real", g.inv.Real())
	return g, nil
}

// fakeUtilizationDir makes the directory whose files set the fake GPUs'
// utilisation (fake_gpu_utilization_dir), so tests only write files.
func fakeUtilizationDir(cfg Config) (string, error) {
	dir := cfg.FakeGPUUtilizationDir
	if dir == "" {
		data, err := cfg.absDataDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(data, "fake-gpu-utilization")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("fake_gpu_utilization_dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // tests and demos write here; it holds percentages
		return "", fmt.Errorf("fake_gpu_utilization_dir: %w", err)
	}
	return dir, nil
}

func (g *gpus) close() {
	if g.inv != nil {
		g.inv.Close()
	}
}

// gpuCheck prints the NVML inventory; non-zero exit on an NVML error. It
// is `make gpu-check`, for a real GPU host.
func gpuCheck(_ []string) error {
	if err := gpu.Describe(os.Stdout); err != nil {
		return fmt.Errorf("gpu-check: %w", err)
	}
	return nil
}
