// Package kube runs project containers as pods on a Kubernetes cluster: the
// same runtime.Runtime contract as session/docker, for labs with more than
// one node. Images are still built by the Docker builder and pushed to the
// lab's registry; pods pull them from there.
package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client is the API connection every part of the runtime shares.
type Client struct {
	Config    *rest.Config
	Clientset kubernetes.Interface
	Namespace string
}

// NewClient connects with kubeconfig, or with the pod's own service
// account when kubeconfig is "" (the gateway running in the cluster).
func NewClient(kubeconfig, namespace string) (*Client, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Client{Config: cfg, Clientset: cs, Namespace: namespace}, nil
}
