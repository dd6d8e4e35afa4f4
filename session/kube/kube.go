package kube

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Config is the admin's `kubernetes:` block, defaults filled in.
type Config struct {
	Kubeconfig string // "" means in-cluster
	Namespace  string
	// Registry is where built images are pushed and pods pull from
	// ("127.0.0.1:5000" for make k8s-up's cluster).
	Registry string
	// NodeSelector narrows the nodes project pods may run on.
	NodeSelector map[string]string
	// GPUResource is the extended resource a GPU is requested as.
	GPUResource string
	// MIGResources are the extended resources of MIG instances
	// ("nvidia.com/mig-3g.20gb": 3 compute slices), each a slot of its own.
	MIGResources []string
}

// Pusher copies a locally built image to the registry pods pull from.
// The Docker builder implements it.
type Pusher interface {
	// Push tags image (a local reference or ID) as remote, pushes it, and
	// returns the pushed reference by digest ("remote@sha256:...").
	Push(ctx context.Context, image, remote string) (string, error)
}

// Kube is the Kubernetes runtime: it implements runtime.Runtime and
// runtime.Sampler. A container ID is the pod's name.
type Kube struct {
	c    *Client
	cfg  Config
	push Pusher
	log  *slog.Logger

	st  state    // what the pod runtime remembers (runtime.go)
	fwd fwdState // the pod helper's image, port-forwards, usage caches (k14fwd)
}

// New returns the runtime on an API connection; push publishes the
// images that Launch is given.
func New(c *Client, cfg Config, push Pusher, log *slog.Logger) *Kube {
	if cfg.Namespace == "" {
		cfg.Namespace = c.Namespace
	}
	return &Kube{c: c, cfg: cfg, push: push, log: log}
}

// Stream is one exec's standard streams; nil streams are not opened.
type Stream struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Tty            bool
	Sizes          remotecommand.TerminalSizeQueue
}

// stream runs cmd in the pod's container and copies its streams until it
// ends. It speaks WebSocket (protocol v5, where closing stdin reaches
// the process as EOF) and falls back to SPDY for an older apiserver. A
// non-zero exit is a k8s.io/client-go/util/exec.CodeExitError.
func (k *Kube) stream(ctx context.Context, pod, container string, cmd []string, s Stream) error {
	req := k.c.Clientset.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(k.cfg.Namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     s.Stdin != nil,
			Stdout:    s.Stdout != nil,
			Stderr:    s.Stderr != nil && !s.Tty,
			TTY:       s.Tty,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(k.c.Config, "GET", req.URL().String())
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(k.c.Config, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	// As kubectl: only an apiserver that refuses the WebSocket upgrade
	// gets SPDY.
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{
		Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Tty: s.Tty, TerminalSizeQueue: s.Sizes,
	})
}
