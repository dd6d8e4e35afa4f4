package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestKubernetesConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, "runtime: kubernetes\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := KubeConfig{Namespace: "ds01", Registry: "127.0.0.1:5000", GPUResource: "nvidia.com/gpu"}
	if !cfg.kubernetes() || !reflect.DeepEqual(cfg.Kubernetes, want) {
		t.Errorf("defaults = %q %+v, want kubernetes %+v", cfg.Runtime, cfg.Kubernetes, want)
	}
	if d := defaultConfig(); d.Runtime != "docker" || d.kubernetes() {
		t.Errorf("the default runtime is %q, want docker", d.Runtime)
	}
}

func TestKubernetesConfigKeys(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, `
runtime: kubernetes
kubernetes:
  kubeconfig: /etc/ds01/kubeconfig
  namespace: lab-gpu
  registry: registry.lab.example:443
  node_selector: {lab: gpu, kubernetes.io/arch: amd64}
  gpu_resource: nvidia.com/gpu
  mig_resources: [nvidia.com/mig-3g.20gb, nvidia.com/mig-1g.5gb]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k, err := cfg.kubeRuntimeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if k.Kubeconfig != "/etc/ds01/kubeconfig" || k.Namespace != "lab-gpu" || k.Registry != "registry.lab.example:443" ||
		k.NodeSelector["lab"] != "gpu" || k.NodeSelector["kubernetes.io/arch"] != "amd64" || k.GPUResource != "nvidia.com/gpu" ||
		len(k.MIGResources) != 2 || k.MIGResources[0] != "nvidia.com/mig-3g.20gb" {
		t.Errorf("runtime config = %+v", k)
	}
}

func TestKubernetesConfigRefused(t *testing.T) {
	for body, want := range map[string]string{
		"runtime: podman": "runtime: want docker or kubernetes",
		"runtime: kubernetes\nkubernetes: {namespace: Lab_GPU}":                                            "kubernetes.namespace: want a namespace name",
		"runtime: kubernetes\nkubernetes: {namespace: \"\"}":                                               "kubernetes.namespace",
		"runtime: kubernetes\nkubernetes: {registry: \"http://r:5000\"}":                                   "kubernetes.registry: want host or host:port",
		"runtime: kubernetes\nkubernetes: {registry: \"r:5000/ds01\"}":                                     "kubernetes.registry: want host or host:port",
		"runtime: kubernetes\nkubernetes: {registry: \"r:99999\"}":                                         "kubernetes.registry: want host or host:port",
		"runtime: kubernetes\nkubernetes: {registry: \"\"}":                                                "kubernetes.registry",
		"runtime: kubernetes\nkubernetes: {gpu_resource: gpu}":                                             "kubernetes.gpu_resource: want an extended resource name",
		"runtime: kubernetes\nkubernetes: {gpu_resource: kubernetes.io/x}":                                 "kubernetes.gpu_resource",
		"runtime: kubernetes\nkubernetes: {mig_resources: [nvidia.com/a100]}":                              "kubernetes.mig_resources[0]: \"nvidia.com/a100\": want a MIG resource name",
		"runtime: kubernetes\nkubernetes: {mig_resources: [nvidia.com/mig-1g.5gb, nvidia.com/mig-1g.5gb]}": "kubernetes.mig_resources[1]: \"nvidia.com/mig-1g.5gb\" is listed twice",
		"runtime: kubernetes\nkubernetes: {node_selector: {\"bad key!\": x}}":                              "kubernetes.node_selector: \"bad key!\" is not a label key",
		"runtime: kubernetes\nkubernetes: {node_selector: {lab: \"a b\"}}":                                 "kubernetes.node_selector.lab: \"a b\" is not a label value",
		"kubernetes: {nmespace: x}":                                                                        "kubernetes.nmespace: unknown option",
	} {
		cfg, err := loadConfig(writeConfig(t, body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: err = %v, want one line with %q", body, err, want)
		}
	}
	for _, ok := range []string{"127.0.0.1:5000", "localhost", "[::1]:5000", "[::1]", "Registry.Lab:5000", "10.0.0.1"} {
		if err := checkRegistry(ok); err != nil {
			t.Errorf("registry %q refused: %v", ok, err)
		}
	}
}

// With no kubeconfig set, make k8s-up's .k8s/admin.kubeconfig in the
// working directory is used when it exists; else the in-cluster account.
func TestKubeconfigDefault(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg := defaultConfig()
	cfg.Runtime = runtimeKubernetes
	k, err := cfg.kubeRuntimeConfig()
	if err != nil || k.Kubeconfig != "" {
		t.Fatalf("without .k8s: kubeconfig = %q, %v; want \"\" (in-cluster)", k.Kubeconfig, err)
	}
	if err := os.MkdirAll(".k8s", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(".k8s/admin.kubeconfig", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err = cfg.kubeRuntimeConfig()
	if want := filepath.Join(dir, ".k8s/admin.kubeconfig"); err != nil || k.Kubeconfig != want {
		t.Fatalf("with .k8s: kubeconfig = %q, %v; want %s", k.Kubeconfig, err, want)
	}
	cfg.Kubernetes.Kubeconfig = "other.kubeconfig"
	k, _ = cfg.kubeRuntimeConfig()
	if want := filepath.Join(dir, "other.kubeconfig"); k.Kubeconfig != want {
		t.Errorf("a relative kubeconfig = %q, want %s (resolved once, at start)", k.Kubeconfig, want)
	}
}
