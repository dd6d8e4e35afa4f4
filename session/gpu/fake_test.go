package gpu

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func fakeSlots(t *testing.T, gpus []FakeGPU) []Slot {
	t.Helper()
	inv, err := NewFake(gpus)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	slots, err := inv.Slots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

func TestFakeUUIDsStableAndUnique(t *testing.T) {
	gpus := []FakeGPU{{}, {MIG: []int{3, 2, 2}}, {Name: "Big", MemoryMiB: 81920}, {MIG: []int{7}}}
	a, b := fakeSlots(t, gpus), fakeSlots(t, gpus)
	if len(a) != 6 {
		t.Fatalf("got %d slots, want 6: %+v", len(a), a)
	}
	// A real UUID's shape, so nothing downstream trips over it.
	shape := regexp.MustCompile(`^(GPU|MIG)-[0-9a-z]{4,8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}$`)
	seen := map[string]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("slot %d differs between two inventories: %+v vs %+v", i, a[i], b[i])
		}
		if !shape.MatchString(a[i].UUID) || !strings.Contains(a[i].UUID, "fake") {
			t.Errorf("UUID %q does not look like a fake GPU UUID", a[i].UUID)
		}
		if seen[a[i].UUID] {
			t.Errorf("UUID %q twice", a[i].UUID)
		}
		seen[a[i].UUID] = true
	}
	if got := FakeN(2); !sameSlots(t, got, fakeSlots(t, []FakeGPU{{}, {}})) {
		t.Error("FakeN(2) differs from two default fake GPUs")
	}
	want := []struct{ uuid, index, name, parent string }{
		{"GPU-fake-0000-0000-0000-000000000000", "0", "Fake GPU 40GB", ""},
		{"MIG-fake-0000-0000-0001-000000000000", "1:0", "Fake GPU 40GB MIG 3g.20gb", "GPU-fake-0000-0000-0000-000000000001"},
		{"MIG-fake-0000-0000-0001-000000000001", "1:1", "Fake GPU 40GB MIG 2g.10gb", "GPU-fake-0000-0000-0000-000000000001"},
		{"MIG-fake-0000-0000-0001-000000000002", "1:2", "Fake GPU 40GB MIG 2g.10gb", "GPU-fake-0000-0000-0000-000000000001"},
		{"GPU-fake-0000-0000-0000-000000000002", "2", "Big", ""},
		{"MIG-fake-0000-0000-0003-000000000000", "3:0", "Fake GPU 40GB MIG 7g.40gb", "GPU-fake-0000-0000-0000-000000000003"},
	}
	for i, w := range want {
		if a[i].UUID != w.uuid || a[i].Index != w.index || a[i].Name != w.name || a[i].Parent != w.parent {
			t.Errorf("slot %d = %+v, want %+v", i, a[i], w)
		}
	}
	if a[0].MemoryMiB != 40960 || a[4].MemoryMiB != 81920 || a[1].Slices != 3 || a[0].Slices != 0 {
		t.Errorf("memory or slices wrong: %+v", a)
	}
	inv := FakeN(1)
	if inv.Real() {
		t.Error("fake inventory says Real")
	}
	if _, ok := inv.Utilization(a[0].UUID); ok {
		t.Error("fake inventory knows utilisation")
	}
	if s, _ := FakeN(0).Slots(context.Background()); len(s) != 0 {
		t.Errorf("FakeN(0) has %d slots", len(s))
	}
}

func sameSlots(t *testing.T, inv Inventory, want []Slot) bool {
	got, err := inv.Slots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestFakeMIGValidation(t *testing.T) {
	for _, mig := range [][]int{{0}, {8}, {-1}, {4, 4}, {3, 2, 2, 1}} {
		if _, err := NewFake([]FakeGPU{{MIG: mig}}); err == nil {
			t.Errorf("MIG %v accepted", mig)
		}
	}
	for _, mig := range [][]int{{7}, {1, 1, 1, 1, 1, 1, 1}, {4, 3}, {1}} {
		if _, err := NewFake([]FakeGPU{{MIG: mig}}); err != nil {
			t.Errorf("MIG %v refused: %v", mig, err)
		}
	}
}

func TestGPUEq(t *testing.T) {
	for _, c := range []struct {
		s    Slot
		want float64
	}{
		{Slot{}, 1},
		{Slot{Slices: 7}, 1},
		{Slot{Slices: 3}, 3.0 / 7},
		{Slot{Slices: 1}, 1.0 / 7},
	} {
		if got := c.s.GPUEq(); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v.GPUEq() = %v, want %v", c.s, got, c.want)
		}
	}
	if got := RoundEq(3.0/7 + 2.0/7 + 2.0/7); got != 1 {
		t.Errorf("RoundEq(7/7) = %v", got)
	}
	if got := RoundEq(3.0 / 7); got != 0.43 {
		t.Errorf("RoundEq(3/7) = %v", got)
	}
}

// This host has no NVIDIA driver: NewNVML must say so in a way the
// gateway recognises, so it serves without GPUs rather than failing.
func TestNVMLWithoutLibrary(t *testing.T) {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"); err == nil {
		t.Skip("this host has the NVIDIA library")
	}
	inv, err := NewNVML()
	if err == nil {
		inv.Close()
		t.Skip("NVML found outside /usr/lib/x86_64-linux-gnu: a GPU host")
	}
	// Built without cgo, NewNVML cannot even look for the library.
	if !errors.Is(err, ErrNoNVML) && !strings.Contains(err.Error(), "cgo") {
		t.Errorf("NewNVML: %v; want ErrNoNVML", err)
	}
	if err := Describe(&strings.Builder{}); err == nil {
		t.Error("Describe succeeded without the library")
	}
}

// The gateway must build without cgo (static binaries); NVML is then off.
func TestBuildsWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	cmd := exec.Command(gobin, "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
}

func TestFakeUtilizationFromFiles(t *testing.T) {
	dir := t.TempDir()
	inv, err := NewFake([]FakeGPU{{}, {MIG: []int{3, 4}}, {}, {}}, FakeUtilizationDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	slots, _ := inv.Slots(context.Background())
	util := func(i int) int {
		t.Helper()
		pct, ok := inv.Utilization(slots[i].UUID)
		if !ok {
			t.Fatalf("slot %s: utilisation unknown", slots[i].Index)
		}
		return pct
	}
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(dir+"/"+name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range slots {
		if u := util(i); u != 0 {
			t.Errorf("slot %s: %d%% without a file, want 0", slots[i].Index, u)
		}
	}
	write("0", "87\n")
	write("1", " 40 ")
	write("2", "busy")
	write("3", "250")
	// slots: 0, 1:0, 1:1, 2, 3
	for i, want := range []int{87, 40, 40, 0, 100} {
		if u := util(i); u != want {
			t.Errorf("slot %s: %d%%, want %d", slots[i].Index, u, want)
		}
	}
	write("0", "3")
	if u := util(0); u != 3 {
		t.Errorf("after the file changed: %d%%, want 3", u)
	}
	if _, ok := inv.Utilization("GPU-unknown"); ok {
		t.Error("an unknown UUID has a utilisation")
	}
	if _, ok := FakeN(1).Utilization(slots[0].UUID); ok {
		t.Error("without a directory the utilisation is known")
	}
	if u, ok := FakeN(1, FakeUtilizationDir(dir)).Utilization(slots[0].UUID); !ok || u != 3 {
		t.Errorf("FakeN with a directory: %d, %v", u, ok)
	}
}
