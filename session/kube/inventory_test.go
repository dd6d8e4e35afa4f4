package kube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ds01/ds01-gateway/session/gpu"
)

func node(name string, ready bool, lbl map[string]string, capacity map[string]string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
		},
	}
	for k, v := range capacity {
		n.Status.Capacity[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	return n
}

func inventory(cfg Config, nodes ...*corev1.Node) *Inventory {
	cs := fake.NewClientset()
	for _, n := range nodes {
		cs.Tracker().Add(n)
	}
	if cfg.GPUResource == "" {
		cfg.GPUResource = "nvidia.com/gpu"
	}
	return NewInventory(&Client{Clientset: cs, Namespace: "ds01"}, cfg)
}

func TestInventorySlots(t *testing.T) {
	mig3, mig1 := "nvidia.com/mig-3g.20gb", "nvidia.com/mig-1g.5gb"
	inv := inventory(Config{MIGResources: []string{mig3, mig1}},
		node("node-b", true, nil, map[string]string{"nvidia.com/gpu": "1"}),
		node("node-a", true, nil, map[string]string{"nvidia.com/gpu": "2"}),
		node("mig", true, nil, map[string]string{mig3: "2", mig1: "1"}),
		node("down", false, nil, map[string]string{"nvidia.com/gpu": "4"}),
		node("cpu", true, nil, nil),
	)
	slots, err := inv.Slots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []gpu.Slot{
		{UUID: "k8s/mig/nvidia.com/mig-3g.20gb/0", Index: "mig:0", Name: mig3 + " on mig", MemoryMiB: 20480, Slices: 3},
		{UUID: "k8s/mig/nvidia.com/mig-3g.20gb/1", Index: "mig:1", Name: mig3 + " on mig", MemoryMiB: 20480, Slices: 3},
		{UUID: "k8s/mig/nvidia.com/mig-1g.5gb/0", Index: "mig:2", Name: mig1 + " on mig", MemoryMiB: 5120, Slices: 1},
		{UUID: "k8s/node-a/nvidia.com/gpu/0", Index: "node-a:0", Name: "nvidia.com/gpu on node-a"},
		{UUID: "k8s/node-a/nvidia.com/gpu/1", Index: "node-a:1", Name: "nvidia.com/gpu on node-a"},
		{UUID: "k8s/node-b/nvidia.com/gpu/0", Index: "node-b:0", Name: "nvidia.com/gpu on node-b"},
	}
	if len(slots) != len(want) {
		t.Fatalf("slots = %+v, want %d (NotReady and GPU-less nodes left out)", slots, len(want))
	}
	for i := range want {
		if slots[i] != want[i] {
			t.Errorf("slot %d = %+v, want %+v", i, slots[i], want[i])
		}
	}
	if got := slots[0].GPUEq(); got != 3.0/7 {
		t.Errorf("a 3g instance counts %v gpueq, want 3/7", got)
	}
	if !inv.Real() || !inv.PluginDevices() {
		t.Error("kubernetes slots must be real (Launch gets their UUIDs) and the device plugin's to name")
	}
	if _, ok := inv.Utilization(slots[0].UUID); ok {
		t.Error("utilisation should be unknown")
	}
}

func TestInventoryNodeSelectorAndCordon(t *testing.T) {
	gpuLab := map[string]string{"lab": "gpu"}
	cordoned := node("c", true, gpuLab, map[string]string{"nvidia.com/gpu": "1"})
	cordoned.Spec.Unschedulable = true
	inv := inventory(Config{NodeSelector: gpuLab},
		node("in", true, gpuLab, map[string]string{"nvidia.com/gpu": "1"}),
		node("out", true, map[string]string{"lab": "other"}, map[string]string{"nvidia.com/gpu": "1"}),
		cordoned,
	)
	slots, err := inv.Slots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 1 || slots[0].UUID != "k8s/in/nvidia.com/gpu/0" {
		t.Fatalf("slots = %+v, want only node in's GPU", slots)
	}
}

func TestSlotUUIDRoundTrip(t *testing.T) {
	u := SlotUUID("node1", "nvidia.com/mig-3g.20gb", 4)
	if u != "k8s/node1/nvidia.com/mig-3g.20gb/4" {
		t.Fatalf("SlotUUID = %q", u)
	}
	n, r, i, err := ParseSlotUUID(u)
	if err != nil || n != "node1" || r != "nvidia.com/mig-3g.20gb" || i != 4 {
		t.Fatalf("ParseSlotUUID = %q %q %d %v", n, r, i, err)
	}
	for _, bad := range []string{"GPU-1234", "k8s/", "k8s/node", "k8s/node/0", "k8s//nvidia.com/gpu/0", "k8s/n/nvidia.com/gpu/x", "k8s/n/nvidia.com/gpu/-1"} {
		if _, _, _, err := ParseSlotUUID(bad); err == nil {
			t.Errorf("ParseSlotUUID(%q) accepted", bad)
		}
	}
}

func TestMIGSlices(t *testing.T) {
	for res, want := range map[string]int{"nvidia.com/mig-3g.20gb": 3, "nvidia.com/mig-1g.5gb": 1, "nvidia.com/mig-7g.80gb": 7} {
		if n, err := MIGSlices(res); err != nil || n != want {
			t.Errorf("MIGSlices(%q) = %d, %v; want %d", res, n, err, want)
		}
	}
	for _, bad := range []string{"nvidia.com/gpu", "nvidia.com/mig-8g.80gb", "nvidia.com/mig-3g"} {
		if _, err := MIGSlices(bad); err == nil {
			t.Errorf("MIGSlices(%q) accepted", bad)
		}
	}
}
