package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// With fake GPUs the gateway makes the utilisation directory, and a file
// in it sets a fake GPU's utilisation: the default under data_dir, or
// fake_gpu_utilization_dir.
func TestFakeGPUUtilizationDir(t *testing.T) {
	data := t.TempDir()
	custom := filepath.Join(t.TempDir(), "util")
	for _, tc := range []struct {
		body, dir string
		second    int // slot 1: GPU 1, without a file; or GPU 0's second MIG instance
	}{
		{"data_dir: " + data + "\nfake_gpus: 2\n", filepath.Join(data, "fake-gpu-utilization"), 0},
		{"data_dir: " + data + "\nfake_inventory: [{mig: [3, 4]}]\nfake_gpu_utilization_dir: " + custom + "\n", custom, 42},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err != nil {
			t.Fatal(err)
		}
		g, err := openGPUs(context.Background(), cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer g.close()
		if fi, err := os.Stat(tc.dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v; want a 0755 directory", tc.dir, fi, err)
		}
		if err := os.WriteFile(filepath.Join(tc.dir, "0"), []byte("42\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		slots, _ := g.inv.Slots(context.Background())
		for i, want := range []int{42, tc.second} {
			if pct, ok := g.inv.Utilization(slots[i].UUID); !ok || pct != want {
				t.Errorf("slot %s: %d%% %v, want %d", slots[i].Index, pct, ok, want)
			}
		}
	}
}
