package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// launchTimeout bounds the wait for a pod to run: a cold pull of a big
// image is the slow case.
const launchTimeout = 5 * time.Minute

// eventCheck is how often a pending pod's warning events are read: a
// failed volume mount shows nowhere else.
const eventCheck = 2 * time.Second

func (k *Kube) pods() typedcorev1.PodInterface { return k.c.Clientset.CoreV1().Pods(k.cfg.Namespace) }

// Launch publishes the image, creates the pod and waits until every
// container of it runs. A pod that cannot run (image pull, scheduling,
// mounts) is deleted again and its reason returned.
func (k *Kube) Launch(ctx context.Context, spec runtime.ContainerSpec) (string, error) {
	t0 := time.Now()
	if err := k.awaitHelper(ctx); err != nil {
		return "", err
	}
	image, err := k.publish(ctx, spec.Image)
	if err != nil {
		return "", err
	}
	tPush := time.Since(t0)
	pod, err := k.buildPod(spec, image)
	if err != nil {
		return "", fmt.Errorf("pod spec: %w", err)
	}
	if err := k.ensurePolicy(ctx, pod.Labels[labelUID]); err != nil {
		return "", err
	}
	created, err := k.pods().Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create pod: %w", err)
	}
	tCreate := time.Since(t0) - tPush
	if err := k.waitRunning(ctx, created); err != nil {
		// On a fresh context: the caller's may be what failed.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rmErr := k.Retire(rmCtx, created.Name); rmErr != nil {
			k.log.Warn("remove failed pod", "container", created.Name, "err", rmErr)
		}
		return "", err
	}
	sc := pod.Spec.SecurityContext
	k.st.users.Store(created.Name, podUser{uid: *sc.RunAsUser, gid: *sc.RunAsGroup})
	k.log.Debug("launch timings", "container", created.Name, "push", tPush, "create", tCreate, "running", time.Since(t0)-tPush-tCreate)
	return created.Name, nil
}

// waitRunning follows the pod until all its containers run, or it fails.
func (k *Kube) waitRunning(ctx context.Context, pod *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	tick := time.NewTicker(eventCheck)
	defer tick.Stop()
	rv := pod.ResourceVersion
	for {
		done, err := podStarted(pod)
		if done || err != nil {
			return err
		}
		w, err := k.pods().Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
			ResourceVersion: rv,
		})
		if err != nil {
			return k.launchErr(ctx, pod.Name, fmt.Errorf("watch pod: %w", err))
		}
		pod, rv, err = k.follow(ctx, w, pod, tick.C)
		w.Stop()
		if err != nil {
			return err
		}
	}
}

// follow reads watch events until the pod has started, failed, or the
// watch ends (the API ends watches now and then: the caller watches again
// from the last version seen).
func (k *Kube) follow(ctx context.Context, w watch.Interface, pod *corev1.Pod, tick <-chan time.Time) (*corev1.Pod, string, error) {
	rv := pod.ResourceVersion
	for {
		select {
		case <-ctx.Done():
			return nil, "", k.launchErr(ctx, pod.Name, fmt.Errorf("pod %s did not start within %s", pod.Name, launchTimeout))
		case <-tick:
			if msg := k.warning(ctx, pod.Name, "FailedMount"); msg != "" {
				return nil, "", fmt.Errorf("pod %s: mount failed: %s", pod.Name, msg)
			}
		case ev, ok := <-w.ResultChan():
			if !ok {
				return pod, rv, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, "", fmt.Errorf("pod %s was deleted while starting", pod.Name)
			case watch.Error:
				// Most likely "too old resource version": list afresh.
				p, err := k.pods().Get(ctx, pod.Name, metav1.GetOptions{})
				if err != nil {
					return nil, "", k.launchErr(ctx, pod.Name, fmt.Errorf("get pod: %w", err))
				}
				return p, p.ResourceVersion, nil
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pod, rv = p, p.ResourceVersion
			if done, err := podStarted(pod); done || err != nil {
				return pod, rv, err
			}
		}
	}
}

// launchErr adds the pod's last warning event to err: why a pod is stuck
// pending is often only there.
func (k *Kube) launchErr(ctx context.Context, name string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if msg := k.warning(ctx, name, ""); msg != "" {
		return fmt.Errorf("%w (%s)", err, msg)
	}
	return err
}

// warning is the message of the pod's latest warning event with reason
// (any reason for ""), or "".
func (k *Kube) warning(ctx context.Context, pod, reason string) string {
	sel := fields.Set{"involvedObject.name": pod, "involvedObject.kind": "Pod", "type": corev1.EventTypeWarning}
	if reason != "" {
		sel["reason"] = reason
	}
	evs, err := k.c.Clientset.CoreV1().Events(k.cfg.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	last := evs.Items[0]
	for _, e := range evs.Items[1:] {
		if e.LastTimestamp.After(last.LastTimestamp.Time) {
			last = e
		}
	}
	return last.Reason + ": " + last.Message
}

// stuck are the waiting reasons a pod does not get over by waiting.
var stuck = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
	"CrashLoopBackOff": true,
}

// podStarted reports whether every container of the pod runs, or why it
// never will.
func podStarted(pod *corev1.Pod) (bool, error) {
	name := pod.Name
	if pod.DeletionTimestamp != nil {
		return false, fmt.Errorf("pod %s is being deleted", name)
	}
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		msg := strings.TrimSpace(pod.Status.Reason + ": " + pod.Status.Message)
		if msg == ":" {
			msg = "its containers ended"
		}
		return false, fmt.Errorf("pod %s ended: %s", name, strings.TrimPrefix(msg, ": "))
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return false, fmt.Errorf("pod %s cannot be scheduled: %s", name, c.Message)
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	running := 0
	for _, c := range statuses {
		switch s := c.State; {
		case s.Waiting != nil && stuck[s.Waiting.Reason]:
			return false, fmt.Errorf("pod %s: container %s: %s: %s", name, c.Name, s.Waiting.Reason, s.Waiting.Message)
		case s.Terminated != nil && c.Name == mainContainer:
			return false, fmt.Errorf("pod %s: container %s exited (%s, code %d): %s", name, c.Name, s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.Message)
		case s.Running != nil:
			running++
		}
	}
	if pod.Status.Phase != corev1.PodRunning {
		return false, nil
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Running == nil {
			return false, nil
		}
	}
	return running > 0 && len(pod.Status.ContainerStatuses) == len(pod.Spec.Containers), nil
}

// pushed is one image's publication: ref is set once a push succeeded.
type pushed struct {
	mu  sync.Mutex
	ref string
}

// publish pushes a local image to the registry once per process and
// returns the digest reference pods pull. Without a registry or pusher,
// image is taken to be a reference the nodes can already pull.
func (k *Kube) publish(ctx context.Context, image string) (string, error) {
	if k.push == nil || k.cfg.Registry == "" {
		return image, nil
	}
	v, _ := k.st.images.LoadOrStore(image, &pushed{})
	p := v.(*pushed)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ref != "" {
		return p.ref, nil
	}
	ref, err := k.push.Push(ctx, image, k.cfg.Registry+"/ds01/img:"+imageTag(image))
	if err != nil {
		return "", fmt.Errorf("push image to %s: %w", k.cfg.Registry, err)
	}
	p.ref = ref
	return ref, nil
}

// imageTag is the hex of an image ID; anything else is hashed into a tag.
func imageTag(id string) string {
	tag := strings.TrimPrefix(id, "sha256:")
	if len(tag) <= 128 && validTag(tag) {
		return tag
	}
	return labelValue(id + "\x00")[2:]
}

func validTag(s string) bool {
	if s == "" || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

var errBadUID = errors.New("bad uid for a network policy")

// ensurePolicy makes the user's NetworkPolicy exist: the user's pods take
// connections only from the user's own pods (as the Docker runtime's
// per-user bridge network does); their egress is not restricted. It is
// made once per user and process; an existing one is put right if it was
// changed.
func (k *Kube) ensurePolicy(ctx context.Context, uid string) error {
	if len(validation.IsValidLabelValue(uid)) != 0 || uid == "" {
		return errBadUID
	}
	if _, ok := k.st.policies.Load(uid); ok {
		return nil
	}
	want := userPolicy(k.cfg.Namespace, uid)
	api := k.c.Clientset.NetworkingV1().NetworkPolicies(k.cfg.Namespace)
	_, err := api.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = k.fixPolicy(ctx, want)
	}
	if err != nil {
		return fmt.Errorf("network policy %s: %w", want.Name, err)
	}
	k.st.policies.Store(uid, struct{}{})
	return nil
}
