//go:build cgo

package gpu

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlInventory is the host's GPUs as NVML saw them at start-up. MIG
// layouts change only when an admin reconfigures the GPUs, which also
// means restarting the gateway, so one scan is enough.
type nvmlInventory struct {
	slots []Slot
	// util is the device to read a slot's utilisation from: the GPU itself,
	// or a MIG instance's parent (NVML has no per-instance utilisation).
	util      map[string]nvml.Device
	closeOnce sync.Once
	closeErr  error
}

// NewNVML initialises NVML and reads the inventory once (GPUs and, where
// MIG mode is enabled, their MIG instances). On a host without the library
// it returns ErrNoNVML.
func NewNVML() (Inventory, error) {
	if err := initNVML(); err != nil {
		return nil, err
	}
	inv := &nvmlInventory{util: map[string]nvml.Device{}}
	if err := inv.scan(); err != nil {
		_ = nvml.Shutdown() // the scan's error is the one to report
		return nil, err
	}
	return inv, nil
}

func initNVML() error {
	switch ret := nvml.Init(); ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return ErrNoNVML
	default:
		return fmt.Errorf("nvml init: %w", ret)
	}
}

// nvmlErr turns an NVML return code into an error naming the call.
func nvmlErr(ret nvml.Return, call string, args ...any) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return fmt.Errorf("nvml %s: %w", fmt.Sprintf(call, args...), ret)
}

// gpuInfo is what the scan and Describe read of one physical GPU.
type gpuInfo struct {
	dev       nvml.Device
	uuid      string
	name      string
	memoryMiB uint64
	mig       bool
	pending   bool // MIG mode after the next GPU reset
	migSupp   bool // false on GPUs without MIG
}

func readGPU(i int) (gpuInfo, error) {
	dev, ret := nvml.DeviceGetHandleByIndex(i)
	if err := nvmlErr(ret, "DeviceGetHandleByIndex(%d)", i); err != nil {
		return gpuInfo{}, err
	}
	g := gpuInfo{dev: dev}
	if g.uuid, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return g, nvmlErr(ret, "GetUUID(gpu %d)", i)
	}
	if g.name, ret = dev.GetName(); ret != nvml.SUCCESS {
		return g, nvmlErr(ret, "GetName(gpu %d)", i)
	}
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return g, nvmlErr(ret, "GetMemoryInfo(gpu %d)", i)
	}
	g.memoryMiB = mem.Total >> 20
	cur, pend, ret := dev.GetMigMode()
	switch ret {
	case nvml.SUCCESS:
		g.migSupp = true
		g.mig = cur == nvml.DEVICE_MIG_ENABLE
		g.pending = pend == nvml.DEVICE_MIG_ENABLE
	case nvml.ERROR_NOT_SUPPORTED:
		// A GPU without MIG (consumer cards, V100): a plain full GPU.
	default:
		return g, nvmlErr(ret, "GetMigMode(gpu %d)", i)
	}
	return g, nil
}

// readMIGs returns the GPU's MIG instances as slots.
func readMIGs(i int, g gpuInfo) ([]Slot, error) {
	n, ret := g.dev.GetMaxMigDeviceCount()
	if err := nvmlErr(ret, "GetMaxMigDeviceCount(gpu %d)", i); err != nil {
		return nil, err
	}
	var slots []Slot
	for j := 0; j < n; j++ {
		m, ret := g.dev.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND {
			continue // no instance in this position
		}
		if err := nvmlErr(ret, "GetMigDeviceHandleByIndex(gpu %d, %d)", i, j); err != nil {
			return nil, err
		}
		uuid, ret := m.GetUUID()
		if err := nvmlErr(ret, "GetUUID(mig %d:%d)", i, j); err != nil {
			return nil, err
		}
		attr, ret := m.GetAttributes()
		if err := nvmlErr(ret, "GetAttributes(mig %d:%d)", i, j); err != nil {
			return nil, err
		}
		slices := int(attr.GpuInstanceSliceCount)
		slots = append(slots, Slot{
			UUID:      uuid,
			Index:     fmt.Sprintf("%d:%d", i, j),
			Name:      g.name + fmt.Sprintf(" MIG %dg.%dgb", slices, (attr.MemorySizeMB+512)/1024),
			MemoryMiB: attr.MemorySizeMB,
			Slices:    slices,
			Parent:    g.uuid,
		})
	}
	return slots, nil
}

func (inv *nvmlInventory) scan() error {
	n, ret := nvml.DeviceGetCount()
	if err := nvmlErr(ret, "DeviceGetCount"); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		g, err := readGPU(i)
		if err != nil {
			return err
		}
		inv.util[g.uuid] = g.dev
		if !g.mig {
			inv.slots = append(inv.slots, Slot{UUID: g.uuid, Index: fmt.Sprint(i), Name: g.name, MemoryMiB: g.memoryMiB})
			continue
		}
		// A GPU in MIG mode cannot run work itself: only its instances count.
		migs, err := readMIGs(i, g)
		if err != nil {
			return err
		}
		for _, s := range migs {
			inv.util[s.UUID] = g.dev
		}
		inv.slots = append(inv.slots, migs...)
	}
	return nil
}

func (inv *nvmlInventory) Slots(context.Context) ([]Slot, error) {
	return append([]Slot(nil), inv.slots...), nil
}

func (inv *nvmlInventory) Utilization(uuid string) (int, bool) {
	dev, ok := inv.util[uuid]
	if !ok {
		return 0, false
	}
	u, ret := dev.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		return 0, false
	}
	return int(u.Gpu), true
}

func (inv *nvmlInventory) Real() bool { return true }

func (inv *nvmlInventory) Close() error {
	inv.closeOnce.Do(func() {
		inv.closeErr = nvmlErr(nvml.Shutdown(), "Shutdown")
	})
	return inv.closeErr
}

// Describe writes the inventory as a human-readable report (for
// `make gpu-check` on a real GPU host): driver and NVML versions, then
// each GPU with its MIG instances. It goes on past a failing GPU so the
// report shows as much as it can, and returns the first NVML error.
func Describe(w io.Writer) error {
	if err := initNVML(); err != nil {
		return err
	}
	defer func() { _ = nvml.Shutdown() }() // nothing is left to release on failure
	var first error
	fail := func(err error) {
		fmt.Fprintf(w, "  ERROR: %v\n", err)
		if first == nil {
			first = err
		}
	}
	driver, ret := nvml.SystemGetDriverVersion()
	if err := nvmlErr(ret, "SystemGetDriverVersion"); err != nil {
		fail(err)
	}
	version, ret := nvml.SystemGetNVMLVersion()
	if err := nvmlErr(ret, "SystemGetNVMLVersion"); err != nil {
		fail(err)
	}
	fmt.Fprintf(w, "driver %s, NVML %s\n", driver, version)
	n, ret := nvml.DeviceGetCount()
	if err := nvmlErr(ret, "DeviceGetCount"); err != nil {
		fail(err)
		return first
	}
	fmt.Fprintf(w, "%d GPU(s)\n", n)
	slots := 0
	eq := 0.0
	for i := 0; i < n; i++ {
		g, err := readGPU(i)
		if err != nil {
			fmt.Fprintf(w, "GPU %d\n", i)
			fail(err)
			continue
		}
		mode := "not supported"
		if g.migSupp {
			mode = onOff(g.mig)
			if g.pending != g.mig {
				mode += fmt.Sprintf(" (%s after the next GPU reset)", onOff(g.pending))
			}
		}
		fmt.Fprintf(w, "GPU %d  %s  %s  %d MiB  MIG %s\n", i, g.uuid, g.name, g.memoryMiB, mode)
		if !g.mig {
			slots++
			eq++
			continue
		}
		migs, err := readMIGs(i, g)
		if err != nil {
			fail(err)
			continue
		}
		if len(migs) == 0 {
			fmt.Fprintf(w, "  no MIG instances: this GPU offers no slots until an admin creates some\n")
		}
		for _, s := range migs {
			fmt.Fprintf(w, "  MIG %s  %s  %dg  %d MiB  %.2f gpueq\n", s.Index, s.UUID, s.Slices, s.MemoryMiB, s.GPUEq())
			slots++
			eq += s.GPUEq()
		}
	}
	fmt.Fprintf(w, "%d slot(s), %.2f GPU-equivalents in all\n", slots, RoundEq(eq))
	return first
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}
