package kube

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clusterClient connects to the test cluster (make k8s-up), in the
// namespace DS01_KUBE_NAMESPACE (default ds01-test), or skips.
func clusterClient(t *testing.T) *Client {
	t.Helper()
	kc := os.Getenv("DS01_KUBECONFIG")
	if kc == "" {
		t.Skip("DS01_KUBECONFIG not set (make k8s-up leaves .k8s/admin.kubeconfig)")
	}
	ns := os.Getenv("DS01_KUBE_NAMESPACE")
	if ns == "" {
		ns = "ds01-test"
	}
	c, err := NewClient(kc, ns)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// On the real cluster: a missing namespace is created (and removed again
// here), and the node's extended resource is the GPU inventory.
func TestClusterNamespaceAndInventory(t *testing.T) {
	c := clusterClient(t)
	ctx := context.Background()
	nss := c.Clientset.CoreV1().Namespaces()
	_, err := nss.Get(ctx, c.Namespace, metav1.GetOptions{})
	existed := err == nil
	start := time.Now()
	if err := c.EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("EnsureNamespace took %s (existed %v)", time.Since(start), existed)
	if !existed {
		t.Cleanup(func() { nss.Delete(context.Background(), c.Namespace, metav1.DeleteOptions{}) })
	}
	if _, err := nss.Get(ctx, c.Namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace %s: %v", c.Namespace, err)
	}
	if err := c.EnsureNamespace(ctx); err != nil {
		t.Fatalf("again: %v", err)
	}

	nodes, err := c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	want := int64(0)
	for i := range nodes.Items {
		if q, ok := nodes.Items[i].Status.Capacity["nvidia.com/gpu"]; ok && schedulable(&nodes.Items[i]) {
			want += q.Value()
		}
	}
	start = time.Now()
	slots, err := NewInventory(c, Config{GPUResource: "nvidia.com/gpu"}).Slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Slots took %s: %d slots", time.Since(start), len(slots))
	if int64(len(slots)) != want || want == 0 {
		t.Fatalf("slots = %+v, want %d (make k8s-up gives the node nvidia.com/gpu: 2)", slots, want)
	}
	for _, s := range slots {
		node, res, _, err := ParseSlotUUID(s.UUID)
		if err != nil || res != "nvidia.com/gpu" || !strings.HasPrefix(s.Index, node+":") {
			t.Errorf("slot %+v: %q %q %v", s, node, res, err)
		}
	}
	// A selector no node matches: no slots.
	slots, err = NewInventory(c, Config{GPUResource: "nvidia.com/gpu", NodeSelector: map[string]string{"ds01.test/none": "x"}}).Slots(ctx)
	if err != nil || len(slots) != 0 {
		t.Errorf("selector matching nothing: %+v %v", slots, err)
	}
}
