package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startTimeout bounds the start-up check: an unreachable cluster stops
// the gateway at once, with the reason, rather than at the first login.
const startTimeout = 15 * time.Second

// EnsureNamespace checks at start that the cluster answers and that the
// client's namespace exists, and creates it when it does not. A gateway
// allowed only into its namespace (a Role, no cluster-wide namespace
// access) passes when it can list pods there.
func (c *Client) EnsureNamespace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout+terminatingWait)
	defer cancel()
	if _, err := c.Clientset.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("kubernetes API %s not reachable: %w", c.host(), err)
	}
	nss := c.Clientset.CoreV1().Namespaces()
	got, err := nss.Get(ctx, c.Namespace, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp != nil {
		// A namespace being deleted refuses new objects and then is
		// gone: wait for that, then create it afresh.
		if err = c.awaitGone(ctx); err != nil {
			return err
		}
		err = apierrors.NewNotFound(corev1.Resource("namespaces"), c.Namespace)
	}
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		if _, lerr := c.Clientset.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{Limit: 1}); lerr != nil {
			return fmt.Errorf("kubernetes namespace %s: not allowed to use it: %w", c.Namespace, lerr)
		}
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("kubernetes namespace %s: %w", c.Namespace, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   c.Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "ds01-gateway"},
	}}
	if _, err := nss.Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubernetes namespace %s does not exist and cannot be created: %w", c.Namespace, err)
	}
	return nil
}

// terminatingWait bounds the wait for a namespace that is being deleted
// (its pods get their grace period first).
const terminatingWait = 60 * time.Second

// awaitGone polls until the namespace no longer exists.
func (c *Client) awaitGone(ctx context.Context) error {
	for {
		_, err := c.Clientset.CoreV1().Namespaces().Get(ctx, c.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kubernetes namespace %s: %w", c.Namespace, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes namespace %s is being deleted and is still there: %w", c.Namespace, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Client) host() string {
	if c.Config == nil {
		return "(in-cluster)"
	}
	return c.Config.Host
}
