package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ds01/ds01-gateway/session/kube"
)

// Runtimes: where project containers run.
const (
	runtimeDocker     = "docker"
	runtimeKubernetes = "kubernetes"
)

// defaultKubeconfig is where make k8s-up leaves the test cluster's admin
// kubeconfig, relative to the working directory.
const defaultKubeconfig = ".k8s/admin.kubeconfig"

// KubeConfig is the `kubernetes:` block, read with runtime: kubernetes.
type KubeConfig struct {
	// Kubeconfig is a kubeconfig file; "" is .k8s/admin.kubeconfig when
	// that file exists, else the gateway's own service account
	// (running in the cluster).
	Kubeconfig   string            `yaml:"kubeconfig"`
	Namespace    string            `yaml:"namespace"`
	Registry     string            `yaml:"registry"`
	NodeSelector map[string]string `yaml:"node_selector"`
	GPUResource  string            `yaml:"gpu_resource"`
	MIGResources []string          `yaml:"mig_resources"`
}

func defaultKubeConfig() KubeConfig {
	return KubeConfig{Namespace: "ds01", Registry: "127.0.0.1:5000", GPUResource: "nvidia.com/gpu"}
}

// kubernetes reports whether project containers run as pods.
func (c *Config) kubernetes() bool { return c.Runtime == runtimeKubernetes }

// validateRuntime checks runtime and, for kubernetes, its block.
func (c *Config) validateRuntime() error {
	switch c.Runtime {
	case runtimeDocker:
		return nil
	case runtimeKubernetes:
		return c.Kubernetes.validate()
	}
	return fmt.Errorf("runtime: want docker or kubernetes, got %q", c.Runtime)
}

func (k *KubeConfig) validate() error {
	if errs := validation.IsDNS1123Label(k.Namespace); len(errs) > 0 {
		return fmt.Errorf("kubernetes.namespace: want a namespace name (lowercase letters, digits and '-', at most 63), got %q", k.Namespace)
	}
	if err := checkRegistry(k.Registry); err != nil {
		return fmt.Errorf("kubernetes.registry: %w", err)
	}
	for key, v := range k.NodeSelector {
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return fmt.Errorf("kubernetes.node_selector: %q is not a label key: %s", key, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("kubernetes.node_selector.%s: %q is not a label value: %s", key, v, errs[0])
		}
	}
	if err := checkExtendedResource(k.GPUResource); err != nil {
		return fmt.Errorf("kubernetes.gpu_resource: %w", err)
	}
	seen := map[string]bool{k.GPUResource: true}
	for i, r := range k.MIGResources {
		if err := checkExtendedResource(r); err != nil {
			return fmt.Errorf("kubernetes.mig_resources[%d]: %w", i, err)
		}
		if _, err := kube.MIGSlices(r); err != nil {
			return fmt.Errorf("kubernetes.mig_resources[%d]: %w", i, err)
		}
		if seen[r] {
			return fmt.Errorf("kubernetes.mig_resources[%d]: %q is listed twice (or is gpu_resource)", i, r)
		}
		seen[r] = true
	}
	return nil
}

// checkRegistry accepts host[:port]: what pods' image references start
// with. A scheme or a path is refused.
func checkRegistry(r string) error {
	bad := fmt.Errorf("want host or host:port, like 127.0.0.1:5000 or registry.lab.example, got %q", r)
	host := r
	if strings.Contains(r, ":") && !strings.HasSuffix(r, "]") { // host:port, [v6]:port
		h, port, err := net.SplitHostPort(r)
		if err != nil {
			return bad
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad
		}
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(validation.IsDNS1123Subdomain(strings.ToLower(host))) > 0 {
		return bad
	}
	return nil
}

// checkExtendedResource accepts a domain-qualified resource name like
// nvidia.com/gpu (Kubernetes' own kubernetes.io names are not devices).
func checkExtendedResource(r string) error {
	if !strings.Contains(r, "/") || len(validation.IsQualifiedName(r)) > 0 || strings.HasSuffix(strings.SplitN(r, "/", 2)[0], "kubernetes.io") {
		return fmt.Errorf("want an extended resource name like nvidia.com/gpu, got %q", r)
	}
	return nil
}

// kubeRuntimeConfig is the runtime's configuration, the kubeconfig
// resolved: "" becomes .k8s/admin.kubeconfig in the working directory when
// that exists (make k8s-up's cluster), else stays "" (in-cluster).
func (c *Config) kubeRuntimeConfig() (kube.Config, error) {
	k := c.Kubernetes
	path := k.Kubeconfig
	if path == "" {
		if _, err := os.Stat(defaultKubeconfig); err == nil {
			path = defaultKubeconfig
		} else if !errors.Is(err, os.ErrNotExist) {
			return kube.Config{}, fmt.Errorf("kubernetes.kubeconfig: %w", err)
		}
	}
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return kube.Config{}, fmt.Errorf("kubernetes.kubeconfig: %w", err)
		}
		path = abs
	}
	return kube.Config{
		Kubeconfig:   path,
		Namespace:    k.Namespace,
		Registry:     k.Registry,
		NodeSelector: k.NodeSelector,
		GPUResource:  k.GPUResource,
		MIGResources: k.MIGResources,
	}, nil
}
