//go:build kube

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The kube suite (go test -tags kube -run '^TestKube' ./e2e/) runs the
// gateway with `runtime: kubernetes` against a real cluster: the one at
// $DS01_KUBECONFIG if set (never started or stopped here), else the
// project's own at <repo>/.k8s/admin.kubeconfig ($K8S_DIR moves it, as for
// make) if it answers, else one `make k8s-up` starts for the run and
// `make k8s-down` stops after it. In CI (CI=true) no cluster is a failure.
var (
	kubeconfig string                // the cluster's admin kubeconfig
	kubeNS     string                // the namespace the test gateways use
	kubeAPI    *kubernetes.Clientset // the tests' own view of the cluster
	kubeSkip   string                // why the kube tests skip (never in CI)
)

func init() { suiteHooks = append(suiteHooks, kubeSetup) }

func kubeSetup(root string) (func(), error) {
	fail := func(err error) (func(), error) {
		if os.Getenv("CI") == "true" {
			return nil, fmt.Errorf("kube: no cluster, and CI must not skip: %w", err)
		}
		fmt.Fprintf(os.Stderr, "e2e: kube: skipping the kube tests: %v\n", err)
		kubeSkip = "no Kubernetes cluster: " + err.Error()
		return nil, nil
	}
	if skipReason != "" {
		return nil, nil // the whole suite skips already
	}
	kubeNS = os.Getenv("DS01_E2E_NAMESPACE")
	if kubeNS == "" {
		kubeNS = "ds01-e2e"
	}
	var teardown func()
	if p := os.Getenv("DS01_KUBECONFIG"); p != "" {
		if err := kubeAnswers(p); err != nil {
			return fail(fmt.Errorf("DS01_KUBECONFIG=%s: %w", p, err))
		}
		kubeconfig = p
	} else {
		dir := os.Getenv("K8S_DIR") // make k8s-up's, as the Makefile reads it
		if dir == "" {
			dir = ".k8s"
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		p := filepath.Join(dir, "admin.kubeconfig")
		if err := kubeAnswers(p); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: kube: %s does not answer (%v): make k8s-up\n", p, err)
			start := time.Now()
			if err := makeTarget(root, "k8s-up"); err != nil {
				_ = makeTarget(root, "k8s-down") // whatever half of it started
				return fail(fmt.Errorf("make k8s-up: %w", err))
			}
			fmt.Fprintf(os.Stderr, "e2e: kube: cluster up in %s\n", time.Since(start).Round(100*time.Millisecond))
			teardown = func() {
				start := time.Now()
				if err := makeTarget(root, "k8s-down"); err != nil {
					fmt.Fprintf(os.Stderr, "e2e: kube: make k8s-down: %v\n", err)
				}
				fmt.Fprintf(os.Stderr, "e2e: kube: cluster down in %s\n", time.Since(start).Round(100*time.Millisecond))
			}
			if err := kubeAnswers(p); err != nil {
				teardown()
				return fail(fmt.Errorf("after make k8s-up, %s: %w", p, err))
			}
		}
		kubeconfig = p
	}
	c, err := kubeClientset(kubeconfig)
	if err != nil {
		if teardown != nil {
			teardown()
		}
		return fail(err)
	}
	kubeAPI = c
	return teardown, nil
}

func kubeClientset(path string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg.Timeout = 30 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// kubeAnswers says whether the cluster of the kubeconfig at path is ready.
func kubeAnswers(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	c, err := kubeClientset(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("readyz: %q", body)
	}
	return nil
}

// makeTarget runs `make TARGET` in the repository, its output on stderr.
func makeTarget(root, target string) error {
	cmd := exec.Command("make", "--no-print-directory", target)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// kubeLimits is the DS01 limits file of the kube tests: one GPU per user,
// and CPU and memory small enough that several pods fit on a 2-core test
// node (a pod requests what it is limited to, and the built-in default
// memory limit is more than such a node has).
const kubeLimits = `defaults:
  max_gpu_equivalents: 1.0
  max_gpu_slots_per_container: 1
  max_cpus: 0.25
  memory: 512m
  max_containers_per_user: 3
default_group: student
groups:
  student:
    allow_full_gpu: true
`

// startKubeGateway is startGateway on the Kubernetes runtime, with
// kubeLimits, on a cluster without GPUs: its GPU resource is one no node
// has, so logins get none by default and leave the node's two fake GPUs
// to the GPU tests. The users' pods and network policies go when the
// test ends, after the gateway.
func startKubeGateway(t *testing.T, opts gwOpts) *gw {
	t.Helper()
	return kubeGateway(t, opts, "example.com/no-gpu")
}

// kubeGateway is startKubeGateway with GPUs of gpuResource.
func kubeGateway(t *testing.T, opts gwOpts, gpuResource string) *gw {
	t.Helper()
	if skipReason == "" && kubeSkip != "" {
		t.Skip(kubeSkip)
	}
	extra := map[string]string{}
	for k, v := range opts.Extra {
		extra[k] = v
	}
	if _, ok := extra["limits_file"]; !ok {
		limits := filepath.Join(t.TempDir(), "resource-limits.yaml")
		if err := os.WriteFile(limits, []byte(kubeLimits), 0o644); err != nil {
			t.Fatal(err)
		}
		extra["limits_file"] = limits
	}
	extra["runtime"] = "kubernetes"
	extra["kubernetes"] = fmt.Sprintf("{kubeconfig: %q, namespace: %q, gpu_resource: %q}", kubeconfig, kubeNS, gpuResource)
	opts.Extra = extra
	if opts.StartWait == 0 {
		// A gateway binary's first start on a cluster may build and push
		// the pod helper's image (about a minute for a -race build here).
		opts.StartWait = 3 * time.Minute
	}
	var g *gw
	t.Cleanup(func() { // registered first: runs after the gateway stopped
		if g == nil {
			return
		}
		g.mu.Lock()
		uids := append([]int(nil), g.uids...)
		g.mu.Unlock()
		for _, uid := range uids {
			removeKubeArtifacts(t, uid)
		}
	})
	g = startGateway(t, opts)
	return g
}

// addKubeUser is addUser, with what an interrupted earlier run left of the
// uid in the cluster removed first.
func (g *gw) addKubeUser(t *testing.T, name string, uid int, extra ...string) *user {
	t.Helper()
	removeKubeArtifacts(t, uid)
	return g.addUser(t, name, uid, uid, extra...)
}

// userSelector selects a user's pods, or one project's.
func userSelector(uid int, project string) string {
	s := "ds01.uid=" + strconv.Itoa(uid)
	if project != "" {
		s += ",ds01.project=" + project
	}
	return s
}

// pods lists a user's project pods (with project "", all of them), those
// being deleted left out.
func pods(t *testing.T, uid int, project string) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeoutShort)
	defer cancel()
	l, err := kubeAPI.CoreV1().Pods(kubeNS).List(ctx, metav1.ListOptions{LabelSelector: userSelector(uid, project)})
	if err != nil {
		t.Fatalf("list pods of uid %d: %v", uid, err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podNames(ps []corev1.Pod) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return names
}

// waitPods polls until the user has n pods for project.
func waitPods(t *testing.T, uid int, project string, n int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps := pods(t, uid, project)
		if len(ps) == n {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("uid %d project %q: want %d pods within %s, have %v", uid, project, n, timeout, podNames(ps))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeKubeArtifacts deletes the user's pods and network policy. It only
// reports problems: it runs in cleanups too.
func removeKubeArtifacts(t *testing.T, uid int) {
	t.Helper()
	if kubeAPI == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeoutShort)
	defer cancel()
	zero := int64(0)
	err := kubeAPI.CoreV1().Pods(kubeNS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
		metav1.ListOptions{LabelSelector: userSelector(uid, "")})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleanup: delete pods of uid %d: %v", uid, err)
	}
	err = kubeAPI.NetworkingV1().NetworkPolicies(kubeNS).Delete(ctx, fmt.Sprintf("ds01-u%d", uid), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleanup: delete network policy of uid %d: %v", uid, err)
	}
	// Gone from the API before the next test counts the node's GPUs.
	for ctx.Err() == nil {
		l, err := kubeAPI.CoreV1().Pods(kubeNS).List(ctx, metav1.ListOptions{LabelSelector: userSelector(uid, "")})
		if err != nil || len(l.Items) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("cleanup: pods of uid %d still there after %s", uid, timeoutShort)
}
