package kube

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type countingPusher struct{ n atomic.Int32 }

func (p *countingPusher) Push(ctx context.Context, image, remote string) (string, error) {
	p.n.Add(1)
	return remote + "@sha256:feed", nil
}

// kubelet plays the node for one pod: it sets status to st every few ms
// (a watch may start after the first update) until stop is closed.
func kubelet(t *testing.T, cs *fake.Clientset, st func(*corev1.Pod)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			list, err := cs.CoreV1().Pods("ds01").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range list.Items {
				p := &list.Items[i]
				st(p)
				cs.CoreV1().Pods("ds01").UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func running(p *corev1.Pod) {
	p.Spec.NodeName = "node1"
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mainContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
}

func TestLaunchRunningListRetire(t *testing.T) {
	push := &countingPusher{}
	k, cs := newFake(t, Config{Registry: "127.0.0.1:5000"}, push)
	defer kubelet(t, cs, running)()
	ctx := context.Background()
	spec := testSpec(t)
	id, err := k.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if id != podName(spec.Name) {
		t.Errorf("id %q", id)
	}
	pod, err := cs.CoreV1().Pods("ds01").Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := pod.Spec.Containers[0].Image; img != "127.0.0.1:5000/ds01/img:0123abcd@sha256:feed" {
		t.Errorf("image %s", img)
	}
	spec2 := testSpec(t)
	spec2.Name = "ds01-bob.x-000000"
	spec2.Labels = map[string]string{"ds01.user": "bob", "ds01.instance": "test", "ds01.role": "transfer"}
	id2, err := k.Launch(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	if push.n.Load() != 1 {
		t.Errorf("%d pushes of one image", push.n.Load())
	}
	if ok, err := k.Running(ctx, id); !ok || err != nil {
		t.Errorf("Running = %v, %v", ok, err)
	}

	list, err := k.List(ctx, map[string]string{"ds01.instance": "test", "ds01.gpu.uuids": spec.Labels["ds01.gpu.uuids"]})
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	c := list[0]
	if c.ID != id || c.Name != spec.Name || c.ImageID != spec.Image || !c.Running { // the fake sets no creation time
		t.Errorf("listed %+v", c)
	}
	want := map[string]string{LabelNode: "node1"}
	for k, v := range spec.Labels {
		want[k] = v
	}
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if list, _ := k.List(ctx, map[string]string{"ds01.instance": "test"}); len(list) != 2 {
		t.Errorf("instance lists %d", len(list))
	}
	if list, _ := k.List(ctx, map[string]string{"ds01.role": "transfer"}); len(list) != 1 || list[0].ID != id2 {
		t.Errorf("role lists %+v", list)
	}
	if list, _ := k.List(ctx, map[string]string{"ds01.instance": "other"}); len(list) != 0 {
		t.Errorf("other instance lists %d", len(list))
	}

	if err := k.Retire(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("ds01").Get(ctx, id, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("retired pod: %v", err)
	}
	if err := k.Retire(ctx, id); err != nil {
		t.Errorf("second retire: %v", err)
	}
	if ok, err := k.Running(ctx, id); ok || err != nil {
		t.Errorf("Running after retire = %v, %v", ok, err)
	}
}

// A pod that cannot run fails the launch with the reason, and is removed.
func TestLaunchFails(t *testing.T) {
	for _, c := range []struct {
		name string
		st   func(*corev1.Pod)
		want string
	}{
		{"pull", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mainContainer, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found: reg/img"}}}}
		}, "ErrImagePull: not found: reg/img"},
		{"unschedulable", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: 1 Insufficient memory."}}
		}, "cannot be scheduled: 0/1 nodes are available: 1 Insufficient memory."},
		{"admission", func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "OutOfnvidia.com/gpu", "Node didn't have enough resource"
		}, "OutOfnvidia.com/gpu: Node didn't have enough resource"},
		{"exited", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mainContainer, State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 127, Message: "sleep: not found"}}}}
		}, "exited (Error, code 127)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, cs := newFake(t, Config{}, nil)
			stop := kubelet(t, cs, c.st)
			defer stop()
			_, err := k.Launch(context.Background(), testSpec(t))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if list, _ := cs.CoreV1().Pods("ds01").List(context.Background(), metav1.ListOptions{}); len(list.Items) != 0 {
				t.Errorf("%d pods left", len(list.Items))
			}
		})
	}
}

// The caller's deadline ends the wait, and the pod goes.
func TestLaunchCancelled(t *testing.T) {
	k, cs := newFake(t, Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := k.Launch(ctx, testSpec(t))
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("err = %v", err)
	}
	if list, _ := cs.CoreV1().Pods("ds01").List(context.Background(), metav1.ListOptions{}); len(list.Items) != 0 {
		t.Errorf("%d pods left", len(list.Items))
	}
}

// Each user's pods admit connections from that user's pods alone; a policy
// someone changed is put right.
func TestNetworkPolicy(t *testing.T) {
	k, cs := newFake(t, Config{}, nil)
	ctx := context.Background()
	if err := k.ensurePolicy(ctx, "28100"); err != nil {
		t.Fatal(err)
	}
	np, err := cs.NetworkingV1().NetworkPolicies("ds01").Get(ctx, "ds01-u28100", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel := map[string]string{labelUID: "28100"}
	if s := np.Spec; len(s.PolicyTypes) != 1 || s.PolicyTypes[0] != networkingv1.PolicyTypeIngress ||
		len(s.PodSelector.MatchLabels) != 1 || s.PodSelector.MatchLabels[labelUID] != "28100" ||
		len(s.Ingress) != 1 || len(s.Ingress[0].From) != 1 || s.Ingress[0].From[0].PodSelector.MatchLabels[labelUID] != sel[labelUID] ||
		s.Ingress[0].From[0].NamespaceSelector != nil || len(s.Ingress[0].Ports) != 0 {
		t.Errorf("policy %+v", s)
	}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}} // admits everyone
	if _, err := cs.NetworkingV1().NetworkPolicies("ds01").Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k2 := New(k.c, k.cfg, nil, k.log) // a restarted gateway
	if err := k2.ensurePolicy(ctx, "28100"); err != nil {
		t.Fatal(err)
	}
	np, _ = cs.NetworkingV1().NetworkPolicies("ds01").Get(ctx, "ds01-u28100", metav1.GetOptions{})
	if len(np.Spec.Ingress[0].From) != 1 {
		t.Errorf("policy not put right: %+v", np.Spec)
	}
	if err := k.ensurePolicy(ctx, "a b"); !errors.Is(err, errBadUID) {
		t.Errorf("bad uid: %v", err)
	}
}
