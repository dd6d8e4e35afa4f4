package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

var _ runtime.Sampler = (*Kube)(nil)

// statsTTL is how long one node's stats summary serves every pod on it:
// the idle reclaim samples many pods at once, and the kubelet refreshes
// its CPU counters only every few seconds anyway.
const statsTTL = 5 * time.Second

// Usage is the project container's CPU time, from the kubelet's stats
// summary through the apiserver's node proxy (one call per node every
// statsTTL at most, for all its pods), and the user's processes, counted
// by the pod helper. The kubelet's counter lags the kernel's by its
// housekeeping interval (about 10 s); a pod too new to be in the summary
// reads as no CPU yet.
func (k *Kube) Usage(ctx context.Context, pod string) (runtime.Usage, error) {
	n, err := k.UserProcs(ctx, pod)
	if err != nil {
		return runtime.Usage{}, err
	}
	cpu, err := k.podCPU(ctx, pod)
	if err != nil {
		return runtime.Usage{}, err
	}
	return runtime.Usage{CPU: cpu, UserProcs: n}, nil
}

// UserProcs counts the project container's processes other than its
// keeper (`sleep infinity`), zombies excluded: `pod-helper procs`, which
// sees the pod's shared process namespace.
func (k *Kube) UserProcs(ctx context.Context, pod string) (int, error) {
	out, err := k.helperRun(ctx, pod, "procs")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("pod %s: process count %q", pod, out)
	}
	return n, nil
}

// TerminateUser sends SIGTERM to the user's processes (never the keeper,
// so the pod stays up for Retire) and waits up to grace for them to end.
// Processes still running then are an error that counts them; a pod that
// is gone is not one.
func (k *Kube) TerminateUser(ctx context.Context, pod string, grace time.Duration) error {
	out, err := k.helperRun(ctx, pod, "term", grace.String())
	if errors.Is(err, runtime.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("terminate user processes of %s: %w", pod, err)
	}
	left, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("pod %s: process count %q", pod, out)
	}
	if left > 0 {
		return fmt.Errorf("pod %s: %d user processes still running %s after SIGTERM", pod, left, grace)
	}
	return nil
}

// Forget drops the pod's port-forward connection and cached node.
func (k *Kube) Forget(pod string) {
	k.dropForward(pod)
	k.fwd.mu.Lock()
	delete(k.fwd.nodes, pod)
	k.fwd.mu.Unlock()
}

// nodeStats is one node's CPU counters by pod, as last read.
type nodeStats struct {
	mu  sync.Mutex // held across a fetch: concurrent callers share it
	at  time.Time
	cpu map[string]time.Duration // pod name -> the project container's CPU
}

func (k *Kube) podCPU(ctx context.Context, pod string) (time.Duration, error) {
	node, err := k.podNode(ctx, pod)
	if err != nil {
		return 0, err
	}
	k.fwd.mu.Lock()
	if k.fwd.stats == nil {
		k.fwd.stats = map[string]*nodeStats{}
	}
	s := k.fwd.stats[node]
	if s == nil {
		s = &nodeStats{}
		k.fwd.stats[node] = s
	}
	k.fwd.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpu == nil || k.fwd.clock().Sub(s.at) >= statsTTL {
		fetch := k.fwd.fetchStats
		if fetch == nil {
			fetch = k.fetchStats
		}
		raw, err := fetch(ctx, node)
		if err != nil {
			return 0, fmt.Errorf("stats of node %s: %w", node, err)
		}
		cpu, err := parseSummary(raw, k.cfg.Namespace)
		if err != nil {
			return 0, fmt.Errorf("stats of node %s: %w", node, err)
		}
		s.cpu, s.at = cpu, k.fwd.clock()
	}
	return s.cpu[pod], nil
}

func (k *Kube) fetchStats(ctx context.Context, node string) ([]byte, error) {
	return k.c.Clientset.CoreV1().RESTClient().Get().
		Resource("nodes").Name(node).SubResource("proxy").Suffix("stats", "summary").
		Do(ctx).Raw()
}

// podNode is the node the pod runs on, asked once per pod.
func (k *Kube) podNode(ctx context.Context, pod string) (string, error) {
	k.fwd.mu.Lock()
	node, ok := k.fwd.nodes[pod]
	k.fwd.mu.Unlock()
	if ok {
		return node, nil
	}
	p, err := k.c.Clientset.CoreV1().Pods(k.cfg.Namespace).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("pod %s: %w", pod, runtime.ErrNotRunning)
	}
	if err != nil {
		return "", fmt.Errorf("pod %s: %w", pod, err)
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s is not scheduled: %w", pod, runtime.ErrNotRunning)
	}
	k.fwd.mu.Lock()
	if k.fwd.nodes == nil {
		k.fwd.nodes = map[string]string{}
	}
	k.fwd.nodes[pod] = p.Spec.NodeName
	k.fwd.mu.Unlock()
	return p.Spec.NodeName, nil
}

// summary is the part of the kubelet's /stats/summary read here.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []struct {
			Name string `json:"name"`
			CPU  *struct {
				UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
		} `json:"containers"`
	} `json:"pods"`
}

// parseSummary returns the project containers' CPU time by pod name, for
// the pods of namespace.
func parseSummary(raw []byte, namespace string) (map[string]time.Duration, error) {
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("stats summary: %w", err)
	}
	cpu := map[string]time.Duration{}
	for _, p := range s.Pods {
		if p.PodRef.Namespace != namespace {
			continue
		}
		for _, c := range p.Containers {
			if c.Name == projectName && c.CPU != nil && c.CPU.UsageCoreNanoSeconds != nil {
				cpu[p.PodRef.Name] = time.Duration(*c.CPU.UsageCoreNanoSeconds) //nolint:gosec // nanoseconds of CPU fit
			}
		}
	}
	return cpu, nil
}
