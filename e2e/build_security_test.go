package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Image builds by hostile tenants (issue 10, items 1-6). Users here have
// uids 23000-23999.

// hostService is an HTTP service on the host's loopback, where a
// database or an exporter would be: no build may reach it.
type hostService struct {
	addr string
	hits atomic.Int64
}

func startHostService(t *testing.T) *hostService {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hostService{addr: l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		fmt.Fprintln(w, "host secret")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// localImage builds an image outside the gateway, as an admin or a
// registry could provide it, and removes it after the test.
func localImage(t *testing.T, tag, dockerfile string) {
	t.Helper()
	cmd := exec.Command("docker", "build", "-q", "-t", tag, "-")
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	cmd.Stdin = strings.NewReader(dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
}

func TestBuildRefusesHostileDockerfiles(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	alice := g.addUser(t, "alice", 23001, 23001)
	bob := g.addUser(t, "bob", 23002, 23002)
	host := startHostService(t)
	_, port, _ := net.SplitHostPort(host.addr)
	const proj = "p"

	if r := g.ssh(t, bob, "ds01", "image-create", "secret"); r.code != 0 {
		t.Fatalf("bob's image-create: %s", r)
	}
	r := g.ssh(t, alice, "ds01", "image-create", proj)
	if r.code != 0 {
		t.Fatalf("alice's image-create: %s", r)
	}
	// 4: the build output shows the gateway's LABEL step without values.
	if strings.Contains(r.stderr, "ds01.instance") || !strings.Contains(r.stderr, "LABEL (the gateway's ds01.* labels)") {
		t.Errorf("the build output shows the gateway's labels: %s", r.stderr)
	}
	bobID := strings.TrimPrefix(docker(t, "image", "inspect", "-f", "{{.Id}}", "ds01-23002/secret"), "sha256:")
	localImage(t, "ds01e2e-onbuild:23000", "FROM "+baseImage+"\nONBUILD ADD http://"+host.addr+"/onbuild /x\n")
	localImage(t, "ds01e2e-labelled:23000", "FROM "+baseImage+"\nLABEL ds01.gpu.uuids=GPU-forged\n")
	dfPath := filepath.Join(g.workspace(alice, proj), "Dockerfile")
	before, err := os.ReadFile(dfPath)
	if err != nil {
		t.Fatal(err)
	}

	from := "FROM " + baseImage + "\n"
	for _, tt := range []struct {
		name, df, want string
		more           bool // more than the one line of a refusal: a usage, a failed build
	}{
		{"remote ADD", from + "ADD http://" + host.addr + "/secret /s\n", "Dockerfile line 2: not allowed: ADD \"http://" + host.addr + "/secret\"", false},
		{"remote ADD, JSON form", from + "ADD [\"http://" + host.addr + "/secret\", \"/s\"]\n", "line 2: not allowed: ADD", false},
		{"remote ADD, quoted", from + "ADD --chown=0 \"http://" + host.addr + "/secret\" /s\n", "line 2: not allowed: ADD", false},
		{"remote ADD in ONBUILD", from + "ONBUILD ADD http://" + host.addr + "/secret /s\n", "line 2: ONBUILD: not allowed: ADD", false},
		{"another user's image", "FROM ds01-23002/secret\n", "line 1: FROM: not allowed: \"ds01-23002/secret\" is another user's image", false},
		{"another user's image in COPY --from", from + "COPY --from=ds01-23002/secret /etc/hostname /x\n", "line 2: COPY --from: not allowed", false},
		{"another user's image through ARG", "ARG B=ds01-23002/secret\nFROM $B\n", "line 2: FROM: not allowed", false},
		{"another user's image by ID", "FROM " + bobID[:12] + "\n", "looks like an image ID", false},
		{"another user's image by full ID", "FROM sha256:" + bobID + "\n", "looks like an image ID", false},
		{"registry on the host's loopback", "FROM 127.0.0.1:" + port + "/x\n", "is on a local address", false},
		{"registry on localhost", "FROM localhost:" + port + "/x\n", "is on the server itself", false},
		{"the gateway's labels", from + "LABEL ds01.gpu.uuids=GPU-forged\n", "line 2: not allowed: LABEL \"ds01.gpu.uuids\"", false},
		{"a base whose ONBUILD fetches a URL", "FROM ds01e2e-onbuild:23000\n", "build failed: base image ds01e2e-onbuild:23000: ONBUILD", true},
		{"a base with the gateway's labels", "FROM ds01e2e-labelled:23000\n", "carries the label ds01.gpu.uuids", true},
		{"a huge Dockerfile", from + "#" + strings.Repeat("x", 70<<10) + "\n", "larger than 64 KiB", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := g.sshIn(t, alice, "ds01", strings.NewReader(tt.df), "image-update", proj, "--dockerfile", "-")
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want a refusal with %q: %s", tt.want, r)
			}
			if !tt.more && strings.Contains(strings.TrimSpace(r.stderr), "\n") {
				t.Errorf("the refusal is not one line: %q", r.stderr)
			}
		})
	}
	// --base goes through the same rules.
	if r := g.ssh(t, alice, "ds01", "image-create", "q", "--base", "ds01-23002/secret"); r.code == 0 || !strings.Contains(r.stderr, "another user's image") {
		t.Errorf("image-create --base of another user's image: %s", r)
	}
	// A hand edit in the workspace is checked as well.
	if err := os.WriteFile(dfPath, []byte(from+"ADD http://"+host.addr+"/secret /s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := g.ssh(t, alice, "ds01", "image-update", proj, "--rebuild"); r.code == 0 || !strings.Contains(r.stderr, "not allowed: ADD") {
		t.Errorf("hand-edited remote ADD: %s", r)
	}
	os.WriteFile(dfPath, before, 0o644)
	if n := host.hits.Load(); n != 0 {
		t.Errorf("the host's loopback service got %d requests from builds", n)
	}
	if after, _ := os.ReadFile(dfPath); string(after) != string(before) {
		t.Error("a refused Dockerfile replaced the workspace's")
	}
}

// 7 (FIFO): a Dockerfile that COPYs a FIFO from the workspace builds (or
// fails) promptly instead of pinning a gateway thread forever.
func TestBuildCopyOfFIFO(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	alice := g.addUser(t, "alice", 23031, 23031)
	const proj = "f"
	if r := g.ssh(t, alice, "ds01", "image-create", proj); r.code != 0 {
		t.Fatalf("image-create: %s", r)
	}
	g.mustSSH(t, alice, proj, "mkfifo /workspace/req.fifo && echo ok > /workspace/ok.txt")
	df := "FROM " + baseImage + "\nCOPY ok.txt /tmp/\nCOPY req.fifo /tmp/\n"
	start := time.Now()
	r := runSSH(t, 90*time.Second, strings.NewReader(df), append(g.sshArgs(alice.key, "ds01"), "image-update", proj, "--dockerfile", "-")...)
	if time.Since(start) > 60*time.Second {
		t.Fatalf("the build hung on a FIFO: %s", r)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "COPY req.fifo") {
		t.Errorf("COPY of a FIFO: want the build to fail at that step: %s", r)
	}
}

// 3: builds run under the user's process limit and on the user's own
// network: a fork bomb fails the build with a clear message, another
// user's concurrent build is out of reach, and apt-get still works.
func TestBuildLimitsAndNetwork(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s", Extra: map[string]string{"limits": "{pids_limit: 64}"}})
	alice := g.addUser(t, "alice", 23011, 23011)
	bob := g.addUser(t, "bob", 23012, 23012)
	t.Cleanup(func() {
		for _, uid := range []int{23011, 23012} {
			for _, ctl := range []string{"pids", "memory", "cpu", ""} {
				os.Remove(filepath.Join("/sys/fs/cgroup", ctl, "ds01-builds", fmt.Sprintf("u%d", uid)))
			}
		}
	})
	for _, u := range []*user{alice, bob} {
		if r := g.ssh(t, u, "ds01", "image-create", "p"); r.code != 0 {
			t.Fatalf("image-create: %s", r)
		}
	}
	from := "FROM " + baseImage + "\n"

	t.Run("fork bomb", func(t *testing.T) {
		df := from + "RUN for i in $(seq 300); do sleep 5 & done; wait; echo FORKED-$((3*100))\n"
		r := g.sshIn(t, alice, "ds01", strings.NewReader(df), "image-update", "p", "--dockerfile", "-")
		if r.code == 0 || strings.Contains(r.stderr, "FORKED-300") {
			t.Fatalf("a build forked 300 processes under pids_limit 64: %s", r)
		}
		if !strings.Contains(r.stderr, "reached the limit of 64 processes for your builds: pids_limit") {
			t.Errorf("the failure does not say why: %s", r.stderr)
		}
	})

	t.Run("other user's build unreachable", func(t *testing.T) {
		listen := g.startSSH(t, bob, "ds01", "image-update", "p", "--dockerfile", "-")
		fmt.Fprint(listen.stdin, from+"RUN echo LISTENING-7777; timeout 60 nc -l 7777; true\n")
		listen.stdin.Close()
		listen.waitErr(t, "LISTENING-7777", timeoutLong)
		var ip string
		deadline := time.Now().Add(30 * time.Second)
		for ip == "" && time.Now().Before(deadline) {
			for _, line := range strings.Split(docker(t, "ps", "--no-trunc", "--format", "{{.ID}} {{.Command}}"), "\n") {
				if id, cmd, ok := strings.Cut(line, " "); ok && strings.Contains(cmd, "nc -l 7777") {
					ip = strings.TrimSpace(docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id))
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if ip == "" {
			t.Fatal("bob's build container not found")
		}
		ip = strings.Fields(ip)[0]
		df := from + "RUN if nc -z -w 3 " + ip + " 7777; then echo REACHED-OTHER-BUILD; else echo OTHER-BUILD-UNREACHABLE; fi\n"
		r := g.sshIn(t, alice, "ds01", strings.NewReader(df), "image-update", "p", "--dockerfile", "-")
		if r.code != 0 || strings.Contains(r.stderr, "ds01:   REACHED-OTHER-BUILD") || !strings.Contains(r.stderr, "ds01:   OTHER-BUILD-UNREACHABLE") {
			t.Errorf("alice's build and bob's (%s): %s", ip, r)
		}
		listen.stop()
	})

	t.Run("apt-get works", func(t *testing.T) {
		r := g.ssh(t, alice, "ds01", "image-update", "p", "--add-system", "jq")
		if r.code != 0 {
			t.Fatalf("apt-get in a build: %s", r)
		}
		t.Logf("apt build: %s", lastLines(r.stderr, 2))
		r = g.ssh(t, alice, "ds01", "image-update", "p", "--rebuild")
		t.Logf("cached rebuild: %s", lastLines(r.stderr, 2))
	})
}

// 6: an image's VOLUME gives each container an anonymous volume holding
// what was written there; retiring the container removes it.
func TestVolumesGoWithTheContainer(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "60s"})
	alice := g.addUser(t, "alice", 23021, 23021)
	const proj = "v"
	if r := g.ssh(t, alice, "ds01", "image-create", proj); r.code != 0 {
		t.Fatalf("image-create: %s", r)
	}
	df := "FROM " + baseImage + "\nRUN mkdir /data && chmod 777 /data\nVOLUME /data\n"
	if r := g.sshIn(t, alice, "ds01", strings.NewReader(df), "image-update", proj, "--dockerfile", "-"); r.code != 0 {
		t.Fatalf("image-update: %s", r)
	}
	g.mustSSH(t, alice, proj, "echo data > /data/f")
	ids := containers(t, 23021, proj)
	if len(ids) != 1 {
		t.Fatalf("containers: %v", ids)
	}
	vols := fields(docker(t, "inspect", "-f", `{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}`, ids[0]))
	if len(vols) != 1 {
		t.Fatalf("volumes of the container: %v", vols)
	}
	g.mustSSH(t, alice, "ds01", "container-retire", proj)
	waitContainers(t, 23021, proj, 0, timeoutShort)
	if err := exec.Command("docker", "volume", "inspect", vols[0]).Run(); err == nil {
		exec.Command("docker", "volume", "rm", vols[0]).Run()
		t.Errorf("volume %s outlived its container", vols[0])
	}
}
