package gpu

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FakeGPU describes one fake GPU for hosts without GPUs (demos, tests).
type FakeGPU struct {
	Name      string // default "Fake GPU 40GB"
	MemoryMiB uint64 // default 40960
	// MIG is the compute slices of each MIG instance; empty means one full
	// GPU slot. Each is 1..7 and they sum to at most 7.
	MIG []int
}

const (
	fakeName      = "Fake GPU 40GB"
	fakeMemoryMiB = 40960
)

// fakeMemEighths is the share of memory, in eighths, that a MIG profile of
// n compute slices gets on an A100, so fake names read like real ones
// ("3g.20gb"). 5 and 6 have no A100 profile; they get 6/8.
var fakeMemEighths = [migSlices + 1]uint64{0, 1, 2, 4, 4, 6, 6, 8}

type fakeInventory struct {
	slots []Slot
	// gpuOf maps a slot's UUID to its GPU's index, for utilisation.
	gpuOf   map[string]int
	utilDir string
}

// FakeOption configures a fake inventory.
type FakeOption func(*fakeInventory)

// FakeUtilizationDir makes the fake GPUs report utilisation, so tests can
// make a GPU busy or idle: file dir/<i> holds GPU i's utilisation as an
// integer percent, which its MIG instances report too. A missing file
// reads as 0 %, and so does anything but a number. Without this option a
// fake GPU's utilisation is unknown.
func FakeUtilizationDir(dir string) FakeOption {
	return func(f *fakeInventory) { f.utilDir = dir }
}

// NewFake returns an inventory of the given GPUs. UUIDs encode the GPU
// (and MIG) index, so they stay the same across restarts and containers
// labelled with them are restored.
func NewFake(gpus []FakeGPU, opts ...FakeOption) (Inventory, error) {
	var slots []Slot
	for i, g := range gpus {
		name, mem := g.Name, g.MemoryMiB
		if name == "" {
			name = fakeName
		}
		if mem == 0 {
			mem = fakeMemoryMiB
		}
		uuid := fakeGPUUUID(i)
		if len(g.MIG) == 0 {
			slots = append(slots, Slot{UUID: uuid, Index: fmt.Sprint(i), Name: name, MemoryMiB: mem})
			continue
		}
		sum := 0
		for j, n := range g.MIG {
			if n < 1 || n > migSlices {
				return nil, fmt.Errorf("fake GPU %d: MIG instance %d has %d slices; each needs 1 to %d", i, j, n, migSlices)
			}
			sum += n
		}
		if sum > migSlices {
			return nil, fmt.Errorf("fake GPU %d: MIG instances have %d slices in all; a GPU has %d", i, sum, migSlices)
		}
		for j, n := range g.MIG {
			m := mem * fakeMemEighths[n] / 8
			slots = append(slots, Slot{
				UUID:      fakeMIGUUID(i, j),
				Index:     fmt.Sprintf("%d:%d", i, j),
				Name:      fmt.Sprintf("%s MIG %dg.%dgb", name, n, (m+512)/1024),
				MemoryMiB: m,
				Slices:    n,
				Parent:    uuid,
			})
		}
	}
	f := &fakeInventory{slots: slots, gpuOf: make(map[string]int, len(slots))}
	for _, s := range slots {
		gpu, _, _ := strings.Cut(s.Index, ":")
		f.gpuOf[s.UUID], _ = strconv.Atoi(gpu)
	}
	for _, o := range opts {
		o(f)
	}
	return f, nil
}

// FakeN is n fake full GPUs.
func FakeN(n int, opts ...FakeOption) Inventory {
	inv, _ := NewFake(make([]FakeGPU, max(n, 0)), opts...) // full GPUs cannot be invalid
	return inv
}

// fakeGPUUUID has the shape of a real GPU UUID (8-4-4-4-12 after the
// prefix, give or take "fake"), so tools that check the shape accept it.
func fakeGPUUUID(gpu int) string {
	return fmt.Sprintf("GPU-fake-0000-0000-0000-%012d", gpu)
}

func fakeMIGUUID(gpu, mig int) string {
	return fmt.Sprintf("MIG-fake-0000-0000-%04d-%012d", gpu, mig)
}

func (f *fakeInventory) Slots(context.Context) ([]Slot, error) {
	return append([]Slot(nil), f.slots...), nil
}

// Utilization reads the GPU's file: one small read per call, cheap
// enough for a sweep of every container.
func (f *fakeInventory) Utilization(uuid string) (int, bool) {
	gpu, ok := f.gpuOf[uuid]
	if !ok || f.utilDir == "" {
		return 0, false
	}
	file, err := os.Open(filepath.Join(f.utilDir, strconv.Itoa(gpu)))
	if err != nil {
		return 0, true
	}
	defer file.Close()
	var buf [16]byte
	n, _ := io.ReadFull(file, buf[:])
	pct, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0, true
	}
	return min(max(pct, 0), 100), true
}

func (f *fakeInventory) Real() bool { return false }

func (f *fakeInventory) Close() error { return nil }
