package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

var _ runtime.Runtime = (*Kube)(nil)

// state is what the runtime remembers between calls; its zero value is
// ready to use.
type state struct {
	images   sync.Map // local image ID -> *pushed
	policies sync.Map // uid -> struct{}: the user's NetworkPolicy exists
	users    sync.Map // pod name -> podUser
}

// podUser is who a pod's processes run as.
type podUser struct{ uid, gid int64 }

// retireWait bounds how long Retire waits for a deleted pod to go.
const retireWait = 30 * time.Second

// Running reports whether the pod exists and its main container runs.
func (k *Kube) Running(ctx context.Context, id string) (bool, error) {
	pod, err := k.pods().Get(ctx, id, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get pod: %w", err)
	}
	return podRunning(pod), nil
}

func podRunning(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == mainContainer {
			return c.State.Running != nil
		}
	}
	return false
}

// Retire deletes the pod at once (no grace: the session layer has ended
// what it wanted to end gracefully) and waits until the API no longer
// has it. A missing pod is not an error.
func (k *Kube) Retire(ctx context.Context, id string) error {
	k.st.users.Delete(id)
	err := k.pods().Delete(ctx, id, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, retireWait)
	defer cancel()
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		_, err := k.pods().Get(ctx, id, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("delete pod: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete pod %s: still there after %s", id, retireWait)
		case <-time.After(delay):
		}
	}
}

// List returns the pods carrying every label given, running or not, with
// their labels exactly as launched and the node under LabelNode.
func (k *Kube) List(ctx context.Context, want map[string]string) ([]runtime.Container, error) {
	list, err := k.pods().List(ctx, metav1.ListOptions{LabelSelector: selector(want)})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	out := make([]runtime.Container, 0, len(list.Items))
	for i := range list.Items {
		pod := &list.Items[i]
		labels := decodeLabels(pod.Annotations, pod.Labels)
		if !matches(labels, want) {
			continue
		}
		if pod.Spec.NodeName != "" {
			labels[LabelNode] = pod.Spec.NodeName
		}
		name := pod.Annotations[annoName]
		if name == "" {
			name = pod.Name
		}
		out = append(out, runtime.Container{
			ID:      pod.Name,
			Name:    name,
			Labels:  labels,
			ImageID: pod.Annotations[annoImage],
			Running: podRunning(pod),
			Created: pod.CreationTimestamp.UTC(),
		})
	}
	return out, nil
}
