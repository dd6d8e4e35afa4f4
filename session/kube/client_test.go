package kube

import (
	"testing"

	"k8s.io/client-go/kubernetes/fake"
)

func TestFakeClientset(t *testing.T) {
	c := &Client{Clientset: fake.NewClientset(), Namespace: "ds01"}
	if c.Clientset == nil {
		t.Fatal("no clientset")
	}
}
