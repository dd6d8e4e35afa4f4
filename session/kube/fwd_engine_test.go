package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Engine tests on a real cluster: DS01_KUBECONFIG names its admin
// kubeconfig; the registry is 127.0.0.1:5000 (make k8s-up's). They use
// Docker to build and push the helper image: run them under the Docker
// lock.

const (
	fwdNamespace = "k14fwd"
	fwdUID       = 28300
)

// cliDocker builds and pushes with the docker CLI: enough for tests.
type cliDocker struct{}

func (cliDocker) ImageID(ctx context.Context, ref string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", ref).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such image") {
			return "", nil
		}
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (cliDocker) Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", spec.Ref, "-")
	cmd.Stdin = spec.Context
	b, err := cmd.CombinedOutput()
	out.Write(b)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (cliDocker) Push(ctx context.Context, image, remote string) (string, error) {
	if out, err := exec.CommandContext(ctx, "docker", "tag", image, remote).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, "docker", "push", remote).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no digest in %s", out)
	}
	return remote + "@" + string(m[1]), nil
}

var (
	engineOnce sync.Once
	engineKube *Kube
	engineBase string
	engineErr  error
)

// fwdEngine returns the runtime on the test cluster, its helper image
// prepared from a freshly built gateway binary.
func fwdEngine(t *testing.T) (*Kube, string) {
	t.Helper()
	kc := os.Getenv("DS01_KUBECONFIG")
	if kc == "" {
		t.Skip("DS01_KUBECONFIG is not set")
	}
	engineOnce.Do(func() {
		ctx := context.Background()
		dir, err := os.MkdirTemp("", "k14fwd-bin")
		if err != nil {
			engineErr = err
			return
		}
		exe := filepath.Join(dir, "ds01-gateway")
		if out, err := exec.Command("go", "build", "-o", exe, "../../cmd/ds01-gateway").CombinedOutput(); err != nil {
			engineErr = fmt.Errorf("build the gateway: %v: %s", err, out)
			return
		}
		c, err := NewClient(kc, fwdNamespace)
		if err != nil {
			engineErr = err
			return
		}
		_, err = c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fwdNamespace}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			engineErr = err
			return
		}
		k := New(c, Config{Namespace: fwdNamespace, Registry: "127.0.0.1:5000"}, cliDocker{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		t0 := time.Now()
		if _, engineErr = k.PrepareHelper(ctx, cliDocker{}, exe); engineErr != nil {
			return
		}
		fmt.Printf("PrepareHelper (build or reuse, push): %v\n", time.Since(t0).Round(time.Millisecond))
		t0 = time.Now()
		if _, engineErr = k.PrepareHelper(ctx, cliDocker{}, exe); engineErr != nil {
			return
		}
		fmt.Printf("PrepareHelper again (a restart): %v\n", time.Since(t0).Round(time.Millisecond))
		engineBase, engineErr = cliDocker{}.Push(ctx, "ds01-base:bookworm", "127.0.0.1:5000/k14fwd/base:bookworm")
		engineKube = k
	})
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return engineKube, engineBase
}

// testPod starts a pod shaped as the pod builder shapes it (shared
// process namespace, `project` keeping it alive as the user, hardened)
// with the helper added, and removes it at the end.
func testPod(t *testing.T, k *Kube, base string) (string, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("fwd-%d", time.Now().UnixNano()%1e9)
	uid, gid := int64(fwdUID), int64(fwdUID)
	yes, no := true, false
	spec := corev1.PodSpec{
		ShareProcessNamespace:         &yes,
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		TerminationGracePeriodSeconds: new(int64),
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: &yes,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{
			Name: projectName, Image: base, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sleep", "infinity"},
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		}},
	}
	k.addHelper(&spec, uid, gid)
	if len(spec.Containers) != 2 {
		t.Fatal("addHelper added no helper")
	}
	pods := k.c.Clientset.CoreV1().Pods(fwdNamespace)
	t0 := time.Now()
	if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Forget(name)
		zero := int64(0)
		pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	for {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 2
		for _, s := range p.Status.ContainerStatuses {
			ready = ready && s.Ready
			if w := s.State.Waiting; w != nil && w.Reason != "ContainerCreating" && w.Reason != "" {
				t.Fatalf("container %s: %s: %s", s.Name, w.Reason, w.Message)
			}
		}
		if ready {
			t.Logf("pod with helper running after %v", time.Since(t0).Round(time.Millisecond))
			return name, p.Status.PodIP
		}
		if time.Since(t0) > 90*time.Second {
			t.Fatalf("pod not running: %+v", p.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sh runs a shell command in the project container and returns stdout.
func sh(t *testing.T, k *Kube, pod, script string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := k.stream(context.Background(), pod, projectName, []string{"sh", "-c", script}, Stream{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatalf("%s: %v: %s", script, err, errOut.String())
	}
	return out.String()
}

// Perl servers (the base image has no python): an echo server, and one
// that sends 64 MiB and closes.
const (
	echoServer = `nohup perl -MIO::Socket::INET -e '$SIG{CHLD}="IGNORE"; $s=IO::Socket::INET->new(LocalAddr=>$ARGV[0],Listen=>50,ReuseAddr=>1) or die; while($c=$s->accept){ if(!fork){ while(sysread($c,$b,65536)){syswrite($c,$b)} exit } close $c }' %s >/dev/null 2>&1 &`
	bulkServer = `nohup perl -MIO::Socket::INET -e '$SIG{CHLD}="IGNORE"; $s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1:8081",Listen=>5,ReuseAddr=>1) or die; $b="\0"x65536; while($c=$s->accept){ if(!fork){ for(1..1024){syswrite($c,$b)} exit } close $c }' >/dev/null 2>&1 &`
	unixEcho   = `nohup perl -MIO::Socket::UNIX -e '$SIG{CHLD}="IGNORE"; unlink "/tmp/echo.sock"; $s=IO::Socket::UNIX->new(Local=>"/tmp/echo.sock",Listen=>5) or die; while($c=$s->accept){ if(!fork){ while(sysread($c,$b,65536)){syswrite($c,$b)} exit } close $c }' >/dev/null 2>&1 &`
)

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(40 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestEngineForwards(t *testing.T) {
	k, base := fwdEngine(t)
	pod, ip := testPod(t, k, base)
	ctx := context.Background()
	sh(t, k, pod, fmt.Sprintf(echoServer, "127.0.0.1:8080")+fmt.Sprintf(echoServer, "0.0.0.0:8082")+bulkServer+unixEcho)
	waitFor(t, "the servers", func() bool {
		return strings.Contains(sh(t, k, pod, "ls /tmp; cat /proc/net/tcp"), "echo.sock") &&
			strings.Count(sh(t, k, pod, "cat /proc/net/tcp"), " 0A ") >= 3
	})

	t.Run("loopback", func(t *testing.T) {
		var dial, rtt, eof []time.Duration
		for range 20 {
			t0 := time.Now()
			c, err := k.Dial(ctx, pod, "tcp", "127.0.0.1:8080")
			if err != nil {
				t.Fatal(err)
			}
			dial = append(dial, time.Since(t0))
			t0 = time.Now()
			c.Write([]byte("ping"))
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
				t.Fatalf("echo: %q, %v", b, err)
			}
			rtt = append(rtt, time.Since(t0))
			t0 = time.Now()
			echo(t, c, "")
			eof = append(eof, time.Since(t0))
			c.Close()
		}
		for _, l := range [][]time.Duration{dial, rtt, eof} {
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		}
		t.Logf("-L over port-forward, median (min-max): dial %v (%v-%v), echo round trip %v (%v-%v), half-close to EOF %v",
			dial[10], dial[0], dial[19], rtt[10], rtt[0], rtt[19], eof[10])
	})

	t.Run("loopback-throughput", func(t *testing.T) {
		c, err := k.Dial(ctx, pod, "tcp", "127.0.0.1:8081")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		t0 := time.Now()
		n, err := io.Copy(io.Discard, c)
		d := time.Since(t0)
		if err != nil || n != 64<<20 {
			t.Fatalf("read %d, %v", n, err)
		}
		t.Logf("-L throughput over port-forward: %.0f MB/s", float64(n)/d.Seconds()/1e6)
	})

	t.Run("refused", func(t *testing.T) {
		c, err := k.Dial(ctx, pod, "tcp", "127.0.0.1:8099")
		if err == nil {
			// A port-forward learns of the refusal after the streams open.
			c.Write([]byte("x"))
			b, _ := io.ReadAll(c)
			c.Close()
			if len(b) != 0 {
				t.Fatalf("read %q from a closed port", b)
			}
		}
		// The kept connection still serves afterwards.
		c, err = k.Dial(ctx, pod, "tcp", "127.0.0.1:8080")
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "after a refusal")
		c.Close()
	})

	t.Run("pod-ip-through-helper", func(t *testing.T) {
		t0 := time.Now()
		c, err := k.Dial(ctx, pod, "tcp", net.JoinHostPort(ip, "8082"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("helper dial: %v", time.Since(t0).Round(time.Millisecond))
		echo(t, c, "via the helper")
		c.Close()
		if _, err := k.Dial(ctx, pod, "tcp", net.JoinHostPort(ip, "8099")); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("helper dial to a closed port = %v, want refused", err)
		}
	})

	t.Run("unix-through-helper", func(t *testing.T) {
		c, err := k.Dial(ctx, pod, "unix", "/tmp/echo.sock")
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "unix")
		c.Close()
	})

	t.Run("remote-tcp", func(t *testing.T) {
		ln, err := k.Listen(ctx, pod, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		if port == 0 {
			t.Fatal("no port")
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					b := make([]byte, 5)
					io.ReadFull(c, b)
					c.Write(bytes.ToUpper(b))
					c.Close()
				}()
			}
		}()
		for i := range 3 {
			out := sh(t, k, pod, fmt.Sprintf(`bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; printf hello >&3; head -c 5 <&3'`, port))
			if out != "HELLO" {
				t.Fatalf("connection %d through -R: %q", i, out)
			}
		}
		ln.Close()
		waitFor(t, "the port to close", func() bool {
			return !strings.Contains(sh(t, k, pod, "cat /proc/net/tcp"), fmt.Sprintf(":%04X 00000000:0000 0A", port))
		})
	})

	t.Run("remote-throughput", func(t *testing.T) {
		ln, err := k.Listen(ctx, pod, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		got := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- -1
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			got <- n
		}()
		t0 := time.Now()
		sh(t, k, pod, fmt.Sprintf(`bash -c 'head -c 67108864 /dev/zero >/dev/tcp/127.0.0.1/%d'`, port))
		n := <-got
		d := time.Since(t0)
		if n != 64<<20 {
			t.Fatalf("received %d bytes, want 64 MiB", n)
		}
		t.Logf("-R throughput through the helper: %.0f MB/s", float64(n)/d.Seconds()/1e6)
	})

	t.Run("agent-socket", func(t *testing.T) {
		const sock = "/run/ds01/agent-test.sock"
		ln, err := k.Listen(ctx, pod, "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("agent here"))
			c.Close()
		}()
		if got := sh(t, k, pod, "stat -c %a:%u "+sock); strings.TrimSpace(got) != fmt.Sprintf("600:%d", fwdUID) {
			t.Errorf("socket mode:owner %q", got)
		}
		if got := sh(t, k, pod, "nc -U -N "+sock+" </dev/null || nc -U "+sock+" </dev/null"); got != "agent here" {
			t.Errorf("read %q from the agent socket", got)
		}
		ln.Close()
		waitFor(t, "the socket to go", func() bool { return sh(t, k, pod, "test -e "+sock+" && echo yes || true") == "" })
	})
}

func TestEngineSampler(t *testing.T) {
	k, base := fwdEngine(t)
	pod, _ := testPod(t, k, base)
	ctx := context.Background()
	n, err := k.UserProcs(ctx, pod)
	if err != nil || n != 0 {
		t.Fatalf("fresh pod: %d user processes, %v; want 0", n, err)
	}
	sh(t, k, pod, `nohup sleep 1000 >/dev/null 2>&1 & nohup sh -c 'trap "" TERM; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; while :; do sleep 1; done' >/dev/null 2>&1 &`)
	t0 := time.Now()
	n, err = k.UserProcs(ctx, pod)
	t.Logf("UserProcs: %v", time.Since(t0).Round(time.Millisecond))
	if err != nil || n < 2 {
		t.Fatalf("with two nohup jobs: %d user processes, %v", n, err)
	}
	waitFor(t, "CPU in the kubelet's stats", func() bool {
		u, err := k.Usage(ctx, pod)
		if err != nil {
			t.Fatal(err)
		}
		return u.CPU > 0
	})
	err = k.TerminateUser(ctx, pod, time.Second)
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("terminate with a job ignoring SIGTERM = %v", err)
	}
	sh(t, k, pod, `pkill -KILL -f '[t]rap' || true`)
	if err := k.TerminateUser(ctx, pod, 5*time.Second); err != nil {
		t.Error(err)
	}
	if n, err := k.UserProcs(ctx, pod); err != nil || n != 0 {
		t.Errorf("after term: %d user processes, %v", n, err)
	}
	// The keeper survives: the pod runs on.
	if got := sh(t, k, pod, "echo alive"); got != "alive\n" {
		t.Errorf("pod after term: %q", got)
	}
}

func TestEngineExecLatency(t *testing.T) {
	k, base := fwdEngine(t)
	pod, _ := testPod(t, k, base)
	ctx := context.Background()
	for _, c := range []struct {
		container string
		cmd       []string
	}{
		{projectName, []string{"true"}},
		{helperContainer, []string{helperBinary, "pod-helper", "procs"}},
		{projectName, []string{"true"}},
	} {
		var lat []time.Duration
		for range 10 {
			t0 := time.Now()
			if err := k.stream(ctx, pod, c.container, c.cmd, Stream{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("exec %s in %s: median %v (%v-%v)", c.cmd, c.container, lat[5], lat[0], lat[9])
	}
}
