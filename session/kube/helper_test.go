package kube

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ds01/ds01-gateway/session/runtime"
)

func fakeKube(objs ...*corev1.Pod) *Kube {
	cs := fake.NewClientset()
	for _, p := range objs {
		cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	}
	return New(&Client{Clientset: cs, Namespace: "ds01"}, Config{Registry: "127.0.0.1:5000"}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func projectSpec() *corev1.PodSpec {
	return &corev1.PodSpec{Containers: []corev1.Container{{Name: mainContainer, Image: "img"}}}
}

// The helper runs as the user, as hardened as the project container, and
// shares the socket directory, which the project sees read-only.
func TestAddHelper(t *testing.T) {
	k := fakeKube()
	img := "127.0.0.1:5000/ds01/helper:abc@sha256:0"
	k.fwd.image.Store(&img)
	spec := projectSpec()
	k.addHelper(spec, 28300, 28301)
	if len(spec.Containers) != 2 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	h := spec.Containers[1]
	sc := h.SecurityContext
	if h.Name != "ds01-helper" || h.Image != img || strings.Join(h.Command, " ") != "/ds01-gateway pod-helper idle" {
		t.Errorf("helper %s %s %v", h.Name, h.Image, h.Command)
	}
	if *sc.RunAsUser != 28300 || *sc.RunAsGroup != 28301 || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation ||
		!*sc.ReadOnlyRootFilesystem || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("helper security context %+v", sc)
	}
	if h.Resources.Limits.Cpu().IsZero() || h.Resources.Limits.Memory().IsZero() {
		t.Errorf("helper without limits: %v", h.Resources.Limits)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, c := range spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == runtime.IOMountPoint {
				mounts[c.Name] = m
			}
		}
	}
	if m := mounts[mainContainer]; m.Name != runVolume || !m.ReadOnly {
		t.Errorf("project's socket directory mount %+v, want %s read-only", m, runVolume)
	}
	if m := mounts[helperContainer]; m.Name != runVolume || m.ReadOnly {
		t.Errorf("helper's socket directory mount %+v, want %s writable", m, runVolume)
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].EmptyDir == nil || spec.Volumes[0].EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("volumes %+v", spec.Volumes)
	}
}

// Before PrepareHelper the pod stays as it was.
func TestAddHelperWithoutImage(t *testing.T) {
	spec := projectSpec()
	fakeKube().addHelper(spec, 1000, 1000)
	if len(spec.Containers) != 1 || len(spec.Volumes) != 0 {
		t.Errorf("pod changed without a helper image: %+v", spec)
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n"
	libs, err := parseLdd([]byte(out))
	if err != nil || strings.Join(libs, ",") != "/lib/x86_64-linux-gnu/libc.so.6,/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("libs %v, %v", libs, err)
	}
	if _, err := parseLdd([]byte("\tlibfoo.so.1 => not found\n")); err == nil {
		t.Error("a missing library passed")
	}
	if libs, err := parseLdd([]byte("\tstatically linked\n")); err != nil || libs != nil {
		t.Errorf("static: %v, %v", libs, err)
	}
}

// fakeBuilder records builds; the image exists once built.
type fakeBuilder struct {
	mu     sync.Mutex
	builds int
	files  map[string]int64
	ids    map[string]string
}

func (b *fakeBuilder) ImageID(_ context.Context, ref string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ids[ref], nil
}

func (b *fakeBuilder) Build(_ context.Context, spec runtime.BuildSpec, _ io.Writer) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.builds++
	b.files = map[string]int64{}
	tr := tar.NewReader(spec.Context)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b.files[h.Name] = h.Mode
	}
	if b.ids == nil {
		b.ids = map[string]string{}
	}
	b.ids[spec.Ref] = "sha256:built"
	return "sha256:built", nil
}

type fakePusher struct{ pushed []string }

func (p *fakePusher) Push(_ context.Context, image, remote string) (string, error) {
	p.pushed = append(p.pushed, image+" "+remote)
	return remote + "@sha256:d", nil
}

// The image holds the binary and its loader and libraries; a second
// start with the same binary builds nothing and Launch uses the pushed
// digest.
func TestPrepareHelper(t *testing.T) {
	exe := fakeGatewayBinary(t)
	k := fakeKube()
	p := &fakePusher{}
	k.push = p
	b := &fakeBuilder{}
	ref, err := k.PrepareHelper(context.Background(), b, exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "127.0.0.1:5000/ds01/helper:") || !strings.HasSuffix(ref, "@sha256:d") || k.fwd.helperImage() != ref {
		t.Errorf("ref %q, image %q", ref, k.fwd.helperImage())
	}
	if _, ok := b.files["Dockerfile"]; !ok || b.files["rootfs"+helperBinary] != 0o755 {
		t.Errorf("context %v", b.files)
	}
	if libs, _ := sharedObjects(exe); len(libs) > 0 {
		for _, l := range libs {
			if _, ok := b.files[filepath.Join("rootfs", l)]; !ok {
				t.Errorf("context lacks %s", l)
			}
		}
	}
	if _, err := k.PrepareHelper(context.Background(), b, exe); err != nil || b.builds != 1 || len(p.pushed) != 2 {
		t.Errorf("second start: %v, %d builds, pushes %v", err, b.builds, p.pushed)
	}
}

// Bad addresses fail before any exec.
func TestListenDialRefuseBadInput(t *testing.T) {
	k := fakeKube()
	ctx := context.Background()
	for _, c := range [][2]string{{"tcp", "example.com:80"}, {"unix", "relative.sock"}, {"udp", "127.0.0.1:53"}, {"tcp", "nocolon"}} {
		if _, err := k.Listen(ctx, "p", c[0], c[1]); err == nil {
			t.Errorf("listen %s %s accepted", c[0], c[1])
		}
	}
	if _, err := k.Dial(ctx, "p", "udp", "1.2.3.4:53"); err == nil {
		t.Error("dial udp accepted")
	}
	if _, err := k.forwardDial(ctx, "p", "0"); err == nil {
		t.Error("port 0 accepted")
	}
}

const summaryJSON = `{"node":{"nodeName":"n1"},"pods":[
 {"podRef":{"name":"a","namespace":"ds01"},"containers":[
   {"name":"ds01-helper","cpu":{"usageCoreNanoSeconds":999}},
   {"name":"project","cpu":{"usageCoreNanoSeconds":1500000000}}]},
 {"podRef":{"name":"b","namespace":"ds01"},"containers":[{"name":"project","cpu":{"usageCoreNanoSeconds":7}}]},
 {"podRef":{"name":"a","namespace":"other"},"containers":[{"name":"project","cpu":{"usageCoreNanoSeconds":5}}]},
 {"podRef":{"name":"c","namespace":"ds01"},"containers":[{"name":"project"}]}]}`

func TestParseSummary(t *testing.T) {
	cpu, err := parseSummary([]byte(summaryJSON), "ds01")
	if err != nil {
		t.Fatal(err)
	}
	if cpu["a"] != 1500*time.Millisecond || cpu["b"] != 7 || len(cpu) != 2 {
		t.Errorf("cpu %v", cpu)
	}
	if _, err := parseSummary([]byte("<html>"), "ds01"); err == nil {
		t.Error("garbage parsed")
	}
}

func pod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ds01"}, Spec: corev1.PodSpec{NodeName: node}}
}

// Pods on one node share one stats call per statsTTL; a missing pod is
// not running.
func TestPodCPUCachedPerNode(t *testing.T) {
	k := fakeKube(pod("a", "n1"), pod("b", "n1"), pod("z", "n2"), pod("pending", ""))
	now := time.Unix(1000, 0)
	k.fwd.now = func() time.Time { return now }
	calls := map[string]int{}
	k.fwd.fetchStats = func(_ context.Context, node string) ([]byte, error) {
		calls[node]++
		if node == "n2" {
			return nil, errors.New("kubelet unreachable")
		}
		return []byte(summaryJSON), nil
	}
	ctx := context.Background()
	for _, name := range []string{"a", "b", "a"} {
		if _, err := k.podCPU(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if cpu, _ := k.podCPU(ctx, "a"); cpu != 1500*time.Millisecond || calls["n1"] != 1 {
		t.Errorf("cpu %v after %d calls, want 1.5s after 1", cpu, calls["n1"])
	}
	now = now.Add(statsTTL)
	k.podCPU(ctx, "b")
	if calls["n1"] != 2 {
		t.Errorf("%d calls after the TTL, want 2", calls["n1"])
	}
	if _, err := k.podCPU(ctx, "z"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable kubelet: %v", err)
	}
	for _, name := range []string{"gone", "pending"} {
		if _, err := k.podCPU(ctx, name); !errors.Is(err, runtime.ErrNotRunning) {
			t.Errorf("%s: %v, want ErrNotRunning", name, err)
		}
	}
	k.Forget("a")
	if _, ok := k.fwd.nodes["a"]; ok {
		t.Error("Forget kept the pod's node")
	}
}

// flakyPusher fails its first push, as a registry still starting would.
type flakyPusher struct {
	fakePusher
	failed bool
}

func (p *flakyPusher) Push(ctx context.Context, image, remote string) (string, error) {
	if !p.failed {
		p.failed = true
		return "", errors.New("connection refused")
	}
	return p.fakePusher.Push(ctx, image, remote)
}

// The image is prepared in the background; Launch's wait gets it, and a
// preparation that failed is tried again instead of failing every launch
// until a restart.
func TestStartHelperAwaitedAndRetried(t *testing.T) {
	exe := fakeGatewayBinary(t)
	k := fakeKube()
	if err := k.awaitHelper(context.Background()); err != nil {
		t.Fatalf("no preparation started: %v", err)
	}
	p := &flakyPusher{}
	k.push = p
	k.StartHelper(context.Background(), &fakeBuilder{}, exe)
	if err := k.awaitHelper(context.Background()); err != nil {
		t.Fatalf("await after a failed first push: %v", err)
	}
	if k.fwd.helperImage() == "" || len(p.pushed) != 1 {
		t.Errorf("image %q, pushes %v: want the retry's", k.fwd.helperImage(), p.pushed)
	}
}

// fakeGatewayBinary is a small dynamically linked binary standing for the
// gateway's, for the helper image's build context.
func fakeGatewayBinary(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/ldd"); err != nil {
		t.Skip("no ldd")
	}
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	exe := filepath.Join(t.TempDir(), "ds01-gateway")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
