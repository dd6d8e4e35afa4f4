package kube

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ds01/ds01-gateway/session/runtime"
)

func newFake(t *testing.T, cfg Config, push Pusher) (*Kube, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	if cfg.Namespace == "" {
		cfg.Namespace = "ds01"
	}
	return New(&Client{Clientset: cs, Namespace: cfg.Namespace}, cfg, push, slog.New(slog.NewTextHandler(io.Discard, nil))), cs
}

func testSpec(t *testing.T) runtime.ContainerSpec {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return runtime.ContainerSpec{
		Name:     "ds01-Alice.my_thesis-a1b2c3",
		Image:    "sha256:0123abcd",
		Hostname: "my_thesis",
		Labels:   map[string]string{"ds01.user": "alice", "ds01.instance": "test", "ds01.role": "", "ds01.gpu.uuids": "k8s/n1/nvidia.com/gpu/0,k8s/n1/nvidia.com/gpu/1"},
		User:     "28100:28100",
		Env:      []string{"HOME=/home/alice", "PS1=$(whoami) $HOME"},
		Workdir:  "/workspace",
		Mounts:   []runtime.Mount{{Source: dir, Target: "/workspace"}, {Source: file, Target: "/etc/passwd", ReadOnly: true}},
		Network:  "ds01-u28100",
		Limits:   runtime.Limits{Memory: 2 << 30, NanoCPUs: 1_500_000_000, PidsLimit: 512, ShmSize: 64 << 20},
		IODir:    "/run/ds01-gateway/x/io",
	}
}

// The pod runs as the user, never as root, with nothing to escalate to.
func TestPodSecurity(t *testing.T) {
	k, _ := newFake(t, Config{}, nil)
	pod, err := k.buildPod(testSpec(t), "reg/img@sha256:1")
	if err != nil {
		t.Fatal(err)
	}
	ps := pod.Spec
	if !*ps.ShareProcessNamespace || *ps.AutomountServiceAccountToken || *ps.EnableServiceLinks {
		t.Errorf("shareProcessNamespace %v automount %v serviceLinks %v", *ps.ShareProcessNamespace, *ps.AutomountServiceAccountToken, *ps.EnableServiceLinks)
	}
	if sc := ps.SecurityContext; *sc.RunAsUser != 28100 || *sc.RunAsGroup != 28100 || !*sc.RunAsNonRoot || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", sc)
	}
	if len(ps.Containers) != 1 || ps.Containers[0].Name != "project" {
		t.Fatalf("containers %+v", ps.Containers)
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if *sc.RunAsUser != 28100 || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || sc.Privileged != nil || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context %+v", sc)
	}
	if !reflect.DeepEqual(c.Command, []string{"sleep", "infinity"}) || c.Args != nil {
		t.Errorf("command %q args %q", c.Command, c.Args)
	}
	if c.Image != "reg/img@sha256:1" || c.ImagePullPolicy != corev1.PullIfNotPresent || c.WorkingDir != "/workspace" {
		t.Errorf("image %s policy %s workdir %s", c.Image, c.ImagePullPolicy, c.WorkingDir)
	}
	if ps.Hostname != "my-thesis" {
		t.Errorf("hostname %q", ps.Hostname)
	}
	// The kubelet would expand $(whoami); Docker passes it literally.
	if want := []corev1.EnvVar{{Name: "HOME", Value: "/home/alice"}, {Name: "PS1", Value: "$$(whoami) $$HOME"}}; !reflect.DeepEqual(c.Env, want) {
		t.Errorf("env %+v", c.Env)
	}
	lim := c.Resources.Limits
	if lim.Memory().Value() != 2<<30 || lim.Cpu().MilliValue() != 1500 || !reflect.DeepEqual(c.Resources.Requests, lim) {
		t.Errorf("limits %v requests %v", lim, c.Resources.Requests)
	}
	if ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restart policy %s", ps.RestartPolicy)
	}
}

func TestPodRefusesRoot(t *testing.T) {
	k, _ := newFake(t, Config{}, nil)
	for _, u := range []string{"0:0", "root", "1000", ":1000", "-1:5"} {
		spec := testSpec(t)
		spec.User = u
		if _, err := k.buildPod(spec, "x"); err == nil {
			t.Errorf("user %q accepted", u)
		}
	}
}

// Bind mounts become hostPath volumes that must exist with their type;
// /dev/shm is memory of ShmSize.
func TestPodMounts(t *testing.T) {
	k, _ := newFake(t, Config{}, nil)
	spec := testSpec(t)
	pod, err := k.buildPod(spec, "x")
	if err != nil {
		t.Fatal(err)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := pod.Spec.Containers[0].VolumeMounts
	if len(mounts) != 3 {
		t.Fatalf("mounts %+v", mounts)
	}
	want := []struct {
		target string
		typ    corev1.HostPathType
		path   string
		ro     bool
	}{{"/workspace", corev1.HostPathDirectory, spec.Mounts[0].Source, false}, {"/etc/passwd", corev1.HostPathFile, spec.Mounts[1].Source, true}}
	for i, w := range want {
		m := mounts[i]
		hp := vols[m.Name].HostPath
		if m.MountPath != w.target || m.ReadOnly != w.ro || hp == nil || hp.Path != w.path || *hp.Type != w.typ {
			t.Errorf("mount %d: %+v %+v", i, m, hp)
		}
	}
	shm := vols[mounts[2].Name].EmptyDir
	if mounts[2].MountPath != "/dev/shm" || shm == nil || shm.Medium != corev1.StorageMediumMemory || shm.SizeLimit.Value() != 64<<20 {
		t.Errorf("shm %+v %+v", mounts[2], shm)
	}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil && strings.Contains(v.HostPath.Path, "io") && v.HostPath.Path == spec.IODir {
			t.Errorf("IODir mounted: %+v", v)
		}
	}
	spec.Mounts = append(spec.Mounts, runtime.Mount{Source: filepath.Join(t.TempDir(), "missing"), Target: "/data"})
	if _, err := k.buildPod(spec, "x"); err == nil || !strings.Contains(err.Error(), "/data") {
		t.Errorf("missing source: %v", err)
	}
}

// Labels are kept exactly in an annotation; the label copies are valid
// label values whatever the spec's values are.
func TestPodLabels(t *testing.T) {
	k, _ := newFake(t, Config{}, nil)
	spec := testSpec(t)
	spec.Labels["ds01.project"] = strings.Repeat("p", 70)
	pod, err := k.buildPod(spec, "x")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range pod.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) != 0 {
			t.Errorf("label %s=%q: %v", k, v, errs)
		}
	}
	if pod.Labels["ds01.user"] != "alice" || pod.Labels[labelUID] != "28100" {
		t.Errorf("labels %v", pod.Labels)
	}
	if got := decodeLabels(pod.Annotations, nil); !reflect.DeepEqual(got, spec.Labels) {
		t.Errorf("annotation labels %v, want %v", got, spec.Labels)
	}
	if pod.Annotations[annoImage] != spec.Image || pod.Annotations[annoName] != spec.Name {
		t.Errorf("annotations %v", pod.Annotations)
	}
}

// GPU slots pin the pod to their node and ask the kubelet for as many
// units; without GPUs the admin's node selector applies.
func TestPodGPUs(t *testing.T) {
	k, _ := newFake(t, Config{NodeSelector: map[string]string{"lab": "gpu"}}, nil)
	spec := testSpec(t)
	spec.GPUs = []string{SlotUUID("n1", "nvidia.com/gpu", 0), SlotUUID("n1", "nvidia.com/gpu", 1), SlotUUID("n1", "nvidia.com/mig-1g.10gb", 3)}
	pod, err := k.buildPod(spec, "x")
	if err != nil {
		t.Fatal(err)
	}
	lim := pod.Spec.Containers[0].Resources.Limits
	if pod.Spec.NodeName != "n1" || pod.Spec.NodeSelector != nil {
		t.Errorf("node %q selector %v", pod.Spec.NodeName, pod.Spec.NodeSelector)
	}
	if q := lim["nvidia.com/gpu"]; q.Value() != 2 {
		t.Errorf("gpus %v", lim)
	}
	if q := lim["nvidia.com/mig-1g.10gb"]; q.Value() != 1 {
		t.Errorf("mig %v", lim)
	}
	if req := pod.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"]; req.Cmp(resource.MustParse("2")) != 0 {
		t.Errorf("requests %v", pod.Spec.Containers[0].Resources.Requests)
	}
	spec.GPUs = []string{SlotUUID("n1", "nvidia.com/gpu", 0), SlotUUID("n2", "nvidia.com/gpu", 0)}
	if _, err := k.buildPod(spec, "x"); err == nil || !strings.Contains(err.Error(), "two nodes") {
		t.Errorf("mixed nodes: %v", err)
	}
	spec.GPUs = []string{"GPU-1234"}
	if _, err := k.buildPod(spec, "x"); err == nil {
		t.Error("a non-kubernetes slot was accepted")
	}
	spec.GPUs = nil
	pod, err = k.buildPod(spec, "x")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "" || pod.Spec.NodeSelector["lab"] != "gpu" {
		t.Errorf("node %q selector %v", pod.Spec.NodeName, pod.Spec.NodeSelector)
	}
	if _, ok := pod.Spec.Containers[0].Resources.Limits["nvidia.com/gpu"]; ok {
		t.Error("gpus without slots")
	}
}

func TestSlotUUID(t *testing.T) {
	for _, c := range []struct {
		node, res string
		i         int
	}{{"node1", "nvidia.com/gpu", 0}, {"n.example.org", "nvidia.com/mig-3g.20gb", 12}, {"n", "gpu", 1}} {
		s := SlotUUID(c.node, c.res, c.i)
		node, res, i, err := ParseSlotUUID(s)
		if err != nil || node != c.node || res != c.res || i != c.i {
			t.Errorf("%s: %q %q %d %v", s, node, res, i, err)
		}
	}
	if s := SlotUUID("node1", "nvidia.com/gpu", 0); s != "k8s/node1/nvidia.com/gpu/0" {
		t.Errorf("SlotUUID = %s", s)
	}
	for _, bad := range []string{"GPU-abc", "k8s/", "k8s/n", "k8s/n/gpu", "k8s//gpu/0", "k8s/n/gpu/x", "k8s/n/gpu/-1", "k8s/n//1"} {
		if _, _, _, err := ParseSlotUUID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestPodName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ds01-alice-thesis-a1b2c3", "ds01-alice-thesis-a1b2c3"},
		{"ds01-bob-proj-00ff00", "ds01-bob-proj-00ff00"},
	} {
		if got := podName(c.in); got != c.want {
			t.Errorf("podName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	seen := map[string]string{}
	for _, in := range []string{"ds01-Alice.thesis-a1", "ds01-alice.thesis-a1x", "ds01-alice.my_thesis-a1", "ds01-alice.my-thesis-a1x",
		"ds01-al.-ice..x", strings.Repeat("a", 100), strings.Repeat("a", 101), "___", "ds01-alice.thesis_-a1"} {
		got := podName(in)
		if errs := validation.IsDNS1123Label(got); len(errs) != 0 || len(got) > maxName {
			t.Errorf("podName(%q) = %q: %v", in, got, errs)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("%q and %q both become %q", prev, in, got)
		}
		seen[got] = in
	}
	if got := podName("ds01-Alice.my_thesis-a1b2c3"); !strings.HasPrefix(got, "ds01-alice-my-thesis-a1b2c3-") {
		t.Errorf("not recognisable: %q", got)
	}
	for _, in := range []string{"my_thesis", "-x-", strings.Repeat("b", 80), "a.b", "_"} {
		if got := hostname(in); len(validation.IsDNS1123Label(got)) != 0 {
			t.Errorf("hostname(%q) = %q", in, got)
		}
	}
}
