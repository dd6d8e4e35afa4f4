//go:build kube

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// A login on the Kubernetes runtime is what it is with Docker: the user's
// uid, in /workspace, in a pod of the project that runs hardened, with the
// user's network policy beside it.
func TestKubeLogin(t *testing.T) {
	t.Parallel()
	g := startKubeGateway(t, gwOpts{RetireAfter: "10s"})
	u := g.addKubeUser(t, "kate", 28401)
	const proj = "hello"

	r := g.ssh(t, u, proj, "id -u; pwd; cat /proc/self/status; ls /var/run/secrets/kubernetes.io 2>&1; echo done")
	if r.code != 0 {
		t.Fatalf("first login: %s", r)
	}
	if r.stdout == "" || !strings.HasPrefix(r.stdout, strconv.Itoa(u.uid)+"\n/workspace\n") {
		t.Errorf("id -u; pwd: want %d and /workspace, got %q", u.uid, firstLines(r.stdout, 2))
	}
	st := keyValuesColon(r.stdout)
	if st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" {
		t.Errorf("capabilities in the pod: CapEff %q CapPrm %q, want none", st["CapEff"], st["CapPrm"])
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs %q, want 1 (no privilege escalation)", st["NoNewPrivs"])
	}
	if st["Seccomp"] != "2" {
		t.Errorf("Seccomp %q, want 2 (a filter: RuntimeDefault)", st["Seccomp"])
	}
	if !strings.Contains(r.stdout, "No such file or directory") {
		t.Errorf("a service-account token is mounted in the pod: %q", r.stdout)
	}

	ps := pods(t, u.uid, proj)
	if len(ps) != 1 {
		t.Fatalf("pods of %s/%s: %v, want 1", u.name, proj, podNames(ps))
	}
	checkPodSecurity(t, &ps[0], u)
	checkNetworkPolicy(t, &ps[0], u)

	// A file the pod writes is in the host workspace, the user's own.
	g.mustSSH(t, u, proj, "echo from-pod > /workspace/f")
	p := filepath.Join(g.workspace(u, proj), "f")
	if b, err := os.ReadFile(p); err != nil || string(b) != "from-pod\n" {
		t.Errorf("the pod's file in the host workspace: %q, %v", b, err)
	} else if uid, _ := fileOwner(t, p); uid != u.uid {
		t.Errorf("the pod's file is owned by %d, want %d", uid, u.uid)
	}

	// A second login joins the pod rather than making another.
	if got := pods(t, u.uid, proj); len(got) != 1 || got[0].Name != ps[0].Name {
		t.Errorf("after a second login: pods %v, want only %s", podNames(got), ps[0].Name)
	}
}

// checkPodSecurity checks what the pod runs as, from its spec.
func checkPodSecurity(t *testing.T, p *corev1.Pod, u *user) {
	t.Helper()
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("pod %s: automountServiceAccountToken is not false", p.Name)
	}
	if p.Spec.HostNetwork || p.Spec.HostPID || p.Spec.HostIPC {
		t.Errorf("pod %s shares a host namespace", p.Name)
	}
	psc := p.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "project" })
	if i < 0 {
		t.Fatalf("pod %s has no container named project: %v", p.Name, p.Spec.Containers)
	}
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no security context", c.Name)
			continue
		}
		if runAs := firstInt64(sc.RunAsUser, psc.RunAsUser); runAs == nil || *runAs == 0 {
			t.Errorf("container %s: runAsUser %v, want a non-root uid", c.Name, runAs)
		} else if c.Name == "project" && *runAs != int64(u.uid) {
			t.Errorf("container project: runAsUser %d, want %d", *runAs, u.uid)
		}
		if nonRoot := firstBool(sc.RunAsNonRoot, psc.RunAsNonRoot); nonRoot == nil || !*nonRoot {
			t.Errorf("container %s: runAsNonRoot not set", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities %+v, want drop ALL and add none", c.Name, sc.Capabilities)
		}
		prof := sc.SeccompProfile
		if prof == nil {
			prof = psc.SeccompProfile
		}
		if prof == nil || prof.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccomp %+v, want RuntimeDefault", c.Name, prof)
		}
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(m.MountPath, "/var/run/secrets") {
				t.Errorf("container %s mounts %s", c.Name, m.MountPath)
			}
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Projected != nil || v.Secret != nil {
			t.Errorf("pod %s: volume %s carries credentials (%+v)", p.Name, v.Name, v.VolumeSource)
		}
	}
}

// checkNetworkPolicy checks the user's NetworkPolicy exists and covers the
// pod. (The test cluster's bridge CNI does not enforce it.)
func checkNetworkPolicy(t *testing.T, p *corev1.Pod, u *user) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeoutShort)
	defer cancel()
	name := fmt.Sprintf("ds01-u%d", u.uid)
	np, err := kubeAPI.NetworkingV1().NetworkPolicies(kubeNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Errorf("the user's network policy %s: %v", name, err)
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
		t.Errorf("network policy %s: pod selector %v (%v) does not select the user's pod %s (labels %v)",
			name, sel, err, p.Name, p.Labels)
	}
	if len(np.Spec.Ingress) == 0 && !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		t.Errorf("network policy %s does not restrict ingress: %+v", name, np.Spec)
	}
}

// Streams as with Docker: stdin's EOF reaches the command, the exit code
// comes back; a terminal has its size, and follows a resize.
func TestKubeExecAndPty(t *testing.T) {
	t.Parallel()
	g := startKubeGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addKubeUser(t, "kurt", 28411)
	const proj = "streams"
	g.mustSSH(t, u, proj, "true") // the build's notices stay out of the subtests

	t.Run("stdin EOF and exit code", func(t *testing.T) {
		r := g.sshIn(t, u, proj, strings.NewReader("data\nmore"), "cat; echo; echo err >&2; exit 7")
		if r.code != 7 || r.stdout != "data\nmore\n" || r.stderr != "err\n" {
			t.Errorf("printf data | ssh 'cat; exit 7': %s", r)
		}
	})

	t.Run("ssh -tt", func(t *testing.T) {
		argv := append([]string{"ssh", "-tt"}, g.sshArgs(u.key, proj)...)
		out := runInPty(t, 33, 111, append(argv, "tty; stty size"))
		for _, want := range []string{"/dev/pts/", "33 111\r\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("ssh -tt 'tty; stty size': want %q in %q", want, out)
			}
		}
	})

	t.Run("pty resize and exit status", func(t *testing.T) {
		client, err := g.goClient(t, u.key, proj)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		s, out := startPtySession(t, client, `trap 'stty size' WINCH; stty size; echo ready; while :; do sleep 0.05; done`)
		waitPty(t, out, "ready")
		if !strings.Contains(out.String(), "33 111") {
			t.Errorf("initial size: %q", out.String())
		}
		if err := s.WindowChange(20, 70); err != nil {
			t.Fatal(err)
		}
		waitPty(t, out, "20 70")
		if err := s.Signal(ssh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Docker reports "signal TERM"; an exec in a pod has no signal
		// API, and a shell killed by one may show as 128+15.
		st := ptyExit(t, s)
		if st != "signal TERM" && st != "status 143" {
			t.Errorf("after SIGTERM: %s", st)
		}
		t.Logf("after SIGTERM: %s", st)
	})

	t.Run("pty exit code", func(t *testing.T) {
		client, err := g.goClient(t, u.key, proj)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		s, out := startPtySession(t, client, `tty; exit 7`)
		if st := ptyExit(t, s); st != "status 7" {
			t.Errorf("exit 7 on a pty: %s (output %q)", st, out.String())
		}
	})
}

// SFTP is served by the gateway into the workspace; the pod sees the file.
func TestKubeSFTP(t *testing.T) {
	t.Parallel()
	g := startKubeGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addKubeUser(t, "kai", 28421)
	const proj = "files"
	g.mustSSH(t, u, proj, "true") // the workspace and the pod exist

	dir := t.TempDir()
	src := filepath.Join(dir, "up.bin")
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(dir, "batch")
	writeFile(t, batch, fmt.Sprintf("put %s up.bin\nget up.bin %s\n", src, filepath.Join(dir, "back.bin")))
	r, err := execTool(timeoutLong, dir, nil, "sftp", g.sftpArgs(u.key, proj, "-b", batch)...)
	if err != nil || r.code != 0 {
		t.Fatalf("sftp put/get: %v %s", err, r)
	}
	want := sha256File(t, src)
	if got := sha256File(t, filepath.Join(g.workspace(u, proj), "up.bin")); got != want {
		t.Errorf("the uploaded file in the host workspace: sha256 %s, want %s", got, want)
	}
	if uid, _ := fileOwner(t, filepath.Join(g.workspace(u, proj), "up.bin")); uid != u.uid {
		t.Errorf("the uploaded file is owned by %d, want %d", uid, u.uid)
	}
	if got := sha256File(t, filepath.Join(dir, "back.bin")); got != want {
		t.Errorf("the file got back: sha256 %s, want %s", got, want)
	}
	if out := g.mustSSH(t, u, proj, "sha256sum /workspace/up.bin"); !strings.HasPrefix(out, want+" ") {
		t.Errorf("the pod sees %q, want sha256 %s", out, want)
	}
}

// -L reaches a server on the pod's own 127.0.0.1, as VS Code's do.
func TestKubeLocalForward(t *testing.T) {
	t.Parallel()
	g := startKubeGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addKubeUser(t, "kim", 28431)
	const proj = "fwd"
	serveInContainer(t, g, u, proj, 8080, "hello-from-pod")

	port := freePort(t)
	b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8080", port))
	defer b.stop()
	for i := range 2 { // a second connection through the same forward
		got := readFrom(t, func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)) })
		if !strings.Contains(got, "hello-from-pod") {
			t.Errorf("ssh -L, connection %d: read %q", i+1, got)
		}
	}
	r := runSSH(t, timeoutShort, nil, g.sshArgs(u.key, proj, "-W", "127.0.0.1:8080")...)
	if !strings.Contains(r.stdout, "hello-from-pod") {
		t.Errorf("ssh -W 127.0.0.1:8080: %s", r)
	}
}

func firstInt64(ps ...*int64) *int64 {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func firstBool(ps ...*bool) *bool {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// keyValuesColon parses /proc/PID/status style "Key:\tvalue" lines.
func keyValuesColon(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
