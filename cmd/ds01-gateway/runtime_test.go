package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ds01/ds01-gateway/session/kube"
)

// With runtime: kubernetes the GPU inventory is the nodes' capacity:
// fake_gpus is ignored, and the log says so.
func TestKubernetesGPUInventory(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, "data_dir: "+t.TempDir()+"\nruntime: kubernetes\nfake_gpus: 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("2")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	kc := &kube.Client{Clientset: fake.NewClientset(n), Namespace: "ds01"}
	var logs bytes.Buffer
	g, err := openGPUs(context.Background(), cfg, kc, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	slots, _ := g.inv.Slots(context.Background())
	if len(slots) != 2 || slots[0].UUID != "k8s/node1/nvidia.com/gpu/0" || !g.inv.Real() || g.alloc == nil {
		t.Fatalf("slots = %+v real %v", slots, g.inv.Real())
	}
	if !strings.Contains(logs.String(), "fake_gpus and fake_inventory are ignored") {
		t.Errorf("no log line about fake_gpus: %s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "fake-gpu-utilization")); err == nil {
		t.Error("the fake utilisation directory was made for kubernetes")
	}
}

// An unreachable cluster stops the start with one clear line.
func TestKubernetesUnreachable(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	cfg, err := loadConfig(writeConfig(t, "runtime: kubernetes\nkubernetes: {kubeconfig: "+kc+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = openRuntime(context.Background(), cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "kubernetes API https://127.0.0.1:1 not reachable") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v", err)
	}
	cfg.Kubernetes.Kubeconfig = filepath.Join(t.TempDir(), "missing")
	if _, _, err = openRuntime(context.Background(), cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "kubernetes config") {
		t.Fatalf("a missing kubeconfig: err = %v", err)
	}
}
