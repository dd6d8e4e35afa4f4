package kube

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestEnsureNamespaceCreates(t *testing.T) {
	cs := fake.NewClientset()
	c := &Client{Clientset: cs, Namespace: "lab"}
	ctx := context.Background()
	if err := c.EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "lab", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace not created: %v", err)
	}
	if ns.Labels["app.kubernetes.io/managed-by"] != "ds01-gateway" {
		t.Errorf("labels = %v", ns.Labels)
	}
	if err := c.EnsureNamespace(ctx); err != nil {
		t.Fatalf("an existing namespace: %v", err)
	}
}

func TestEnsureNamespaceCannotCreate(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "lab", errors.New("no RBAC"))
	})
	err := (&Client{Clientset: cs, Namespace: "lab"}).EnsureNamespace(context.Background())
	if err == nil || !strings.Contains(err.Error(), "namespace lab does not exist and cannot be created") {
		t.Fatalf("err = %v", err)
	}
}

// A gateway confined to its namespace by a Role cannot read namespaces,
// but may use its own.
func TestEnsureNamespaceConfined(t *testing.T) {
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}})
	cs.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "lab", errors.New("no RBAC"))
	})
	if err := (&Client{Clientset: cs, Namespace: "lab"}).EnsureNamespace(context.Background()); err != nil {
		t.Fatalf("confined: %v", err)
	}
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no RBAC"))
	})
	if err := (&Client{Clientset: cs, Namespace: "lab"}).EnsureNamespace(context.Background()); err == nil {
		t.Fatal("a namespace the gateway may not use must stop the start")
	}
}

func TestEnsureNamespaceUnreachable(t *testing.T) {
	kc := t.TempDir() + "/kubeconfig"
	body := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(kc, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(kc, "lab")
	if err != nil {
		t.Fatal(err)
	}
	err = c.EnsureNamespace(context.Background())
	if err == nil || !strings.Contains(err.Error(), "kubernetes API https://127.0.0.1:1 not reachable") {
		t.Fatalf("err = %v", err)
	}
}

// A namespace still being deleted (a quick restart after a cleanup) would
// refuse the first pod: the start waits until it is gone and creates it.
func TestEnsureNamespaceTerminating(t *testing.T) {
	now := metav1.Now()
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab", DeletionTimestamp: &now, Finalizers: []string{"kubernetes"}}})
	c := &Client{Clientset: cs, Namespace: "lab"}
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		cs.CoreV1().Namespaces().Delete(ctx, "lab", metav1.DeleteOptions{})
	}()
	if err := c.EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "lab", metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil {
		t.Fatalf("after the wait: %+v, %v; want a fresh namespace", ns, err)
	}
}
