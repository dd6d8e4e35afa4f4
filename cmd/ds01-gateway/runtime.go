package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ds01/ds01-gateway/session/docker"
	"github.com/ds01/ds01-gateway/session/kube"
	"github.com/ds01/ds01-gateway/session/runtime"
	"k8s.io/klog/v2"
)

// openRuntime is where project containers run: the Docker engine, or,
// with runtime: kubernetes, pods of the configured cluster (kc is then
// the cluster's client, for the GPU inventory; nil with Docker). Images
// are built by dk either way; with kubernetes dk also pushes them to the
// registry the pods pull from.
func openRuntime(ctx context.Context, cfg Config, dk *docker.Docker, log *slog.Logger) (runtime.Runtime, *kube.Client, error) {
	if !cfg.kubernetes() {
		return dk, nil, nil
	}
	kcfg, err := cfg.kubeRuntimeConfig()
	if err != nil {
		return nil, nil, err
	}
	// client-go logs through klog to stderr; into the gateway's own log
	// instead, marked, so its lines are structured like every other.
	klog.SetSlogLogger(log.With("source", "client-go"))
	kc, err := kube.NewClient(kcfg.Kubeconfig, kcfg.Namespace)
	if err != nil {
		return nil, nil, err
	}
	if err := kc.EnsureNamespace(ctx); err != nil {
		return nil, nil, err
	}
	kubeconfig := kcfg.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = "(in-cluster)"
	}
	log.Info("runtime: kubernetes", "api", kc.Config.Host, "kubeconfig", kubeconfig, "namespace", kcfg.Namespace, "registry", kcfg.Registry)
	k := kube.New(kc, kcfg, dk, log)
	// The helper sidecar's image (this binary, for -R, agent sockets and
	// the lifecycle's process counts) is built and pushed in the
	// background; the first launch waits for it, and a restart finds it
	// by the binary's hash.
	k.StartHelper(ctx, dk, "/proc/self/exe")
	return k, kc, nil
}

// The Docker builder publishes images for the Kubernetes runtime.
var _ kube.Pusher = (*docker.Docker)(nil)

// errNoKube is openGPUs' complaint when kubernetes has no client.
var errNoKube = errors.New("runtime kubernetes: no cluster client")
