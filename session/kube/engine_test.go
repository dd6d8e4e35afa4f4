package kube

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Engine tests run against a real cluster: DS01_KUBECONFIG names its
// kubeconfig (make k8s-up's .k8s/admin.kubeconfig), DS01_KUBE_NAMESPACE
// the namespace (default ds01), and the registry is make k8s-up's on
// 127.0.0.1:5000. They use the docker CLI to push the e2e base image.

// dockerPusher pushes with the docker CLI, as a stand-in for the
// builder's Pusher.
type dockerPusher struct{}

func (dockerPusher) Push(ctx context.Context, image, remote string) (string, error) {
	for _, args := range [][]string{{"tag", image, remote}, {"push", "-q", remote}} {
		if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
			return "", &pushErr{args, out, err}
		}
	}
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{range .RepoDigests}}{{println .}}{{end}}", remote).Output()
	if err != nil {
		return "", err
	}
	repo := remote[:strings.LastIndexByte(remote, ':')]
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, repo+"@") {
			return d, nil
		}
	}
	return "", &pushErr{[]string{"inspect", remote}, out, nil}
}

type pushErr struct {
	args []string
	out  []byte
	err  error
}

func (e *pushErr) Error() string { return "docker " + strings.Join(e.args, " ") + ": " + string(e.out) }

func engine(t *testing.T) (*Kube, runtime.ContainerSpec) {
	t.Helper()
	kc := os.Getenv("DS01_KUBECONFIG")
	if kc == "" {
		t.Skip("DS01_KUBECONFIG not set")
	}
	ns := os.Getenv("DS01_KUBE_NAMESPACE")
	if ns == "" {
		ns = "ds01"
	}
	c, err := NewClient(kc, ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	id, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", "ds01-base:bookworm").Output()
	if err != nil {
		t.Fatalf("base image: %v", err)
	}
	t.Cleanup(func() {
		// Launch made the policy of the test's uid; nothing else uses it.
		c.Clientset.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), policyName("28100"), metav1.DeleteOptions{})
	})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k := New(c, Config{Registry: "127.0.0.1:5000"}, dockerPusher{}, log)
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o777); err != nil {
		t.Fatal(err)
	}
	spec := runtime.ContainerSpec{
		Name:     "ds01-k14kube.engine_test-" + time.Now().Format("150405.000"),
		Image:    strings.TrimSpace(string(id)),
		Hostname: "engine_test",
		Labels:   map[string]string{"ds01.instance": "k14kube-test", "ds01.user": "kt", "ds01.role": "", "ds01.gpu.uuids": ""},
		User:     "28100:28100",
		Env:      []string{"HOME=/tmp", "GREETING=$(hello) world"},
		Workdir:  "/workspace",
		Mounts:   []runtime.Mount{{Source: ws, Target: "/workspace"}},
		Limits:   runtime.Limits{Memory: 512 << 20, NanoCPUs: 1e9, ShmSize: 32 << 20},
	}
	return k, spec
}

// run execs cmd and returns its output and status.
func run(t *testing.T, k *Kube, id string, spec runtime.ExecSpec, stdin string) (string, runtime.ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := k.Exec(ctx, id, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		io.WriteString(p.Stdin(), stdin)
		p.Stdin().Close()
	}()
	var out bytes.Buffer
	if err := p.Stream(&out, &out); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), st
}

func TestEnginePod(t *testing.T) {
	k, spec := engine(t)
	ctx := context.Background()
	t0 := time.Now()
	id, err := k.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("launch to running (first, with push): %s", time.Since(t0))
	defer k.Retire(context.Background(), id)

	spec2 := spec
	spec2.Name += "-2"
	t0 = time.Now()
	id2, err := k.Launch(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("launch to running (image pushed and pulled): %s", time.Since(t0))
	t0 = time.Now()
	if err := k.Retire(ctx, id2); err != nil {
		t.Fatal(err)
	}
	t.Logf("retire: %s", time.Since(t0))

	if ok, err := k.Running(ctx, id); !ok || err != nil {
		t.Fatalf("Running = %v, %v", ok, err)
	}
	list, err := k.List(ctx, map[string]string{"ds01.instance": "k14kube-test"})
	if err != nil || len(list) != 1 || list[0].ID != id || !list[0].Running || list[0].ImageID != spec.Image || list[0].Labels[LabelNode] == "" ||
		list[0].Labels["ds01.user"] != "kt" || list[0].Created.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := k.c.Clientset.NetworkingV1().NetworkPolicies(k.cfg.Namespace).Get(ctx, "ds01-u28100", metav1.GetOptions{}); err != nil {
		t.Errorf("network policy: %v", err)
	}

	t.Run("stdin EOF", func(t *testing.T) {
		out, st := run(t, k, id, runtime.ExecSpec{Cmd: []string{"cat"}}, "hello\nworld")
		if out != "hello\nworld" || st.Code != 0 {
			t.Errorf("cat: %q %+v", out, st)
		}
	})
	t.Run("stdin closed at once", func(t *testing.T) {
		// One buffer for stdout and stderr lost output about once in 20
		// before Stream serialised their writes.
		for i := range 20 {
			if out, st := run(t, k, id, runtime.ExecSpec{Cmd: []string{"echo", "hi"}}, ""); out != "hi\n" || st.Code != 0 {
				t.Fatalf("exec %d: %q %+v", i, out, st)
			}
		}
	})
	t.Run("exit code", func(t *testing.T) {
		if _, st := run(t, k, id, runtime.ExecSpec{Cmd: []string{"sh", "-c", "exit 7"}}, ""); st.Code != 7 || st.Signal != 0 {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("user dir env", func(t *testing.T) {
		out, st := run(t, k, id, runtime.ExecSpec{Cmd: []string{"sh", "-c", `echo "$(id -u):$(id -g) $PWD $GREETING $X"; touch made`},
			User: "28100:28100", Dir: "/workspace", Env: []string{"X=$(y) z"}}, "")
		if out != "28100:28100 /workspace $(hello) world $(y) z\n" || st.Code != 0 {
			t.Errorf("got %q %+v", out, st)
		}
		if _, err := os.Stat(filepath.Join(spec.Mounts[0].Source, "made")); err != nil {
			t.Errorf("workspace mount: %v", err)
		}
		out, st = run(t, k, id, runtime.ExecSpec{Cmd: []string{"sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; hostname; df -k /dev/shm | tail -1"}}, "")
		if st.Code != 0 || !strings.Contains(out, "CapEff:\t0000000000000000") ||
			!strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "engine-test") || !strings.Contains(out, "32768") {
			t.Errorf("security: %s %+v", out, st)
		}
	})
	t.Run("tty size and resize", func(t *testing.T) {
		p, err := k.Exec(ctx, id, runtime.ExecSpec{Cmd: []string{"sh", "-c", "stty size; read x; stty size"}, Tty: true, Rows: 40, Cols: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pr, pw := io.Pipe()
		go func() { p.Stream(pw, nil); pw.Close() }()
		buf := make([]byte, 256)
		n, _ := pr.Read(buf)
		if got := strings.TrimSpace(string(buf[:n])); got != "40 100" {
			t.Errorf("initial size %q", got)
		}
		p.Resize(ctx, 50, 120)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(p.Stdin(), "\r")
		rest, _ := io.ReadAll(pr)
		if !strings.Contains(string(rest), "50 120") {
			t.Errorf("after resize %q", rest)
		}
		if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
			t.Errorf("status %+v %v", st, err)
		}
	})
	t.Run("signal", func(t *testing.T) {
		for _, c := range []struct {
			tty bool
			sig syscall.Signal
		}{{false, syscall.SIGTERM}, {true, syscall.SIGHUP}} {
			p, err := k.Exec(ctx, id, runtime.ExecSpec{Cmd: []string{"sleep", "60"}, Tty: c.tty, Rows: 24, Cols: 80})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { p.Stream(io.Discard, io.Discard); close(done) }()
			time.Sleep(300 * time.Millisecond)
			t0 := time.Now()
			if c.tty {
				err = p.Hangup()
			} else {
				err = p.Signal(c.sig)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("signal exec: %s", time.Since(t0))
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("process did not end")
			}
			st, err := p.Wait(ctx)
			if err != nil || st.Signal != c.sig || st.Code != 128+int(c.sig) {
				t.Errorf("tty %v: status %+v %v", c.tty, st, err)
			}
			p.Close()
		}
	})
	t.Run("close unread", func(t *testing.T) {
		p, err := k.Exec(ctx, id, runtime.ExecSpec{Cmd: []string{"yes"}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		p.Close()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := p.Wait(wctx); errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the stream did not end after Close")
		}
	})
	t.Run("exec latency", func(t *testing.T) {
		var ds []time.Duration
		for range 10 {
			t0 := time.Now()
			run(t, k, id, runtime.ExecSpec{Cmd: []string{"true"}}, "")
			ds = append(ds, time.Since(t0))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("exec true: min %s median %s max %s", ds[0], ds[len(ds)/2], ds[len(ds)-1])
		ds = ds[:0]
		for range 10 {
			t0 := time.Now()
			if err := k.stream(ctx, id, mainContainer, []string{"true"}, Stream{Stdout: io.Discard}); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("bare stream true (no wrapper, no stdin): min %s median %s max %s", ds[0], ds[len(ds)/2], ds[len(ds)-1])
	})

	if err := k.Retire(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := k.Running(ctx, id); ok {
		t.Error("running after retire")
	}
	if list, _ := k.List(ctx, map[string]string{"ds01.instance": "k14kube-test"}); len(list) != 0 {
		t.Errorf("listed after retire: %+v", list)
	}
	if err := k.Retire(ctx, id); err != nil {
		t.Errorf("second retire: %v", err)
	}
}

// A pod whose image cannot be pulled fails the launch with the reason, and
// does not stay behind.
func TestEngineLaunchFails(t *testing.T) {
	k, spec := engine(t)
	k = New(k.c, Config{Namespace: k.cfg.Namespace}, nil, k.log) // no push: the image is a reference
	spec.Image = "127.0.0.1:5000/ds01/no-such-image:x"
	_, err := k.Launch(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "ErrImagePull") {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
	if list, _ := k.List(context.Background(), map[string]string{"ds01.instance": "k14kube-test"}); len(list) != 0 {
		t.Errorf("left behind: %+v", list)
	}
}
