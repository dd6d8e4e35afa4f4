package e2e

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Network holders (session/holders.go): a project's second cold start
// joins the network namespace its holder keeps, instead of paying Docker's
// network setup again. uids 28500-28549.

// holders lists the IDs of the user's network holders, for one project or
// all of them.
func holders(t *testing.T, uid int, project string) []string {
	t.Helper()
	args := []string{"ps", "-q", "--no-trunc", "--filter", fmt.Sprintf("label=ds01.uid=%d", uid), "--filter", "label=ds01.role=netholder"}
	if project != "" {
		args = append(args, "--filter", "label=ds01.project="+project)
	}
	return fields(docker(t, args...))
}

// waitHolders polls until the user has n holders for project.
func waitHolders(t *testing.T, uid int, project string, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ids := holders(t, uid, project)
		if len(ids) == n {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("uid %d project %q: want %d holders within %s, have %v", uid, project, n, timeout, ids)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// firstColdStart logs in once, so the project's holder is made, and waits
// for the container to retire and the holder to run.
func firstColdStart(t *testing.T, g *gw, u *user, project string) string {
	t.Helper()
	g.mustSSH(t, u, project, "true")
	waitContainers(t, u.uid, project, 0, timeoutShort)
	return waitHolders(t, u.uid, project, 1, timeoutShort)[0]
}

// The second cold login runs in a container joined to the project's
// holder: same hostname, forwards work, the holder is locked down and its
// process is out of the user's sight, and another user still cannot
// reach the container.
func TestHolderJoinedOnSecondColdLogin(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "hana", 28500, 28500)
	other := g.addUser(t, "ivo", 28501, 28501)
	const proj = "hp"
	g.mustSSH(t, other, "cli", "true")
	if got := strings.TrimSpace(g.mustSSH(t, u, proj, "hostname")); got != proj {
		t.Fatalf("first login's hostname %q", got)
	}
	holder := firstColdStart(t, g, u, proj)

	serveInContainer(t, g, u, proj, 8080, "hello-from-joined")
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("containers %v", ids)
	}
	if mode := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", ids[0]); mode != "container:"+holder {
		t.Fatalf("second cold login's NetworkMode %q, want container:%s", mode, holder)
	}
	if got := strings.TrimSpace(g.mustSSH(t, u, proj, "hostname")); got != proj {
		t.Errorf("joined container's hostname %q, want %q", got, proj)
	}
	got := docker(t, "inspect", "-f", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.PidsLimit}} {{len .Mounts}} {{.HostConfig.SecurityOpt}} {{.HostConfig.PidMode}}|{{.HostConfig.IpcMode}}", holder)
	if got != "65534:65534 true [ALL] 8 0 [no-new-privileges:true] |private" {
		t.Errorf("holder config %q", got)
	}
	// The holder's processes (uid 65534) are in another pid namespace.
	if n := strings.TrimSpace(g.mustSSH(t, u, proj, `for p in /proc/[0-9]*; do stat -c %u $p; done | grep -cx 65534 || true`)); n != "0" {
		t.Errorf("the user sees %s processes of uid 65534 (the holder's)", n)
	}

	t.Run("L", func(t *testing.T) {
		port := freePort(t)
		b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8080", port))
		defer b.stop()
		if got := readFrom(t, func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)) }); !strings.Contains(got, "hello-from-joined") {
			t.Errorf("ssh -L: read %q", got)
		}
	})
	t.Run("W", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", proj} {
			r := runSSH(t, timeoutShort, nil, g.sshArgs(u.key, proj, "-W", host+":8080")...)
			if !strings.Contains(r.stdout, "hello-from-joined") {
				t.Errorf("ssh -W %s:8080: %s", host, r)
			}
		}
	})
	t.Run("D", func(t *testing.T) {
		port := freePort(t)
		b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-D", fmt.Sprintf("127.0.0.1:%d", port))
		defer b.stop()
		got := readFrom(t, func() (net.Conn, error) { return socks5(fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1", 8080) })
		if !strings.Contains(got, "hello-from-joined") {
			t.Errorf("ssh -D: read %q", got)
		}
	})
	t.Run("R", func(t *testing.T) { checkRemoteForward(t, g, u, proj, 10*time.Second) })
	t.Run("isolation", func(t *testing.T) {
		ip := docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", holder)
		if ip == "" {
			t.Fatal("the holder has no IP address")
		}
		l := g.startSSH(t, u, proj, "echo listening; exec nc -lk 8081")
		l.waitOutput(t, "listening", timeoutLong)
		defer l.stop()
		probe := "nc -z -w 3 " + ip + " 8081"
		reached := false
		for deadline := time.Now().Add(10 * time.Second); !reached && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			reached = g.ssh(t, u, proj, probe).code == 0
		}
		if !reached {
			t.Fatalf("the user cannot reach their own listener at %s:8081", ip)
		}
		if r := g.ssh(t, other, "cli", probe); r.code == 0 {
			t.Errorf("another user's container reached %s:8081 in the joined container", ip)
		} else if strings.Contains(r.stderr, "not found") {
			t.Errorf("probe did not run: %s", r)
		}
	})
}

// Two projects of one user, both joined to their holders, listen on the
// same port: each has its own loopback and address.
func TestHolderProjectsShareNoPorts(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "jon", 28502, 28502)
	firstColdStart(t, g, u, "one")
	firstColdStart(t, g, u, "two")
	serveInContainer(t, g, u, "one", 8888, "from-one")
	serveInContainer(t, g, u, "two", 8888, "from-two")
	for _, p := range []string{"one", "two"} {
		if mode := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", containers(t, u.uid, p)[0]); !strings.HasPrefix(mode, "container:") {
			t.Fatalf("%s not joined: %q", p, mode)
		}
		r := runSSH(t, timeoutShort, nil, g.sshArgs(u.key, p, "-W", "127.0.0.1:8888")...)
		if !strings.Contains(r.stdout, "from-"+p) {
			t.Errorf("%s's port 8888: %s", p, r)
		}
	}
}

// A holder goes network_linger after its project's last use.
func TestHolderLinger(t *testing.T) {
	g := startGateway(t, gwOpts{Extra: map[string]string{"network_linger": "2s", "watch_interval": "500ms"}})
	u := g.addUser(t, "kai", 28503, 28503)
	g.mustSSH(t, u, "lp", "true")
	waitHolders(t, u.uid, "lp", 1, timeoutShort)
	waitContainers(t, u.uid, "lp", 0, timeoutShort)
	waitHolders(t, u.uid, "lp", 0, 10*time.Second)
}

// A restarted gateway adopts the holder: the next cold login joins it and
// no second one is made. Turning holders off removes it at the next start,
// and launches are as before.
func TestHolderRestartAndOff(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "lia", 28504, 28504)
	holder := firstColdStart(t, g, u, "rp")
	g.restart(t)
	g.mustSSH(t, u, "rp", "true")
	if ids := holders(t, u.uid, ""); len(ids) != 1 || ids[0] != holder {
		t.Errorf("after a restart: holders %v, want only %s", ids, holder)
	}
	waitContainers(t, u.uid, "rp", 0, timeoutShort)
	time.Sleep(time.Second) // a holder made by mistake would show by now
	if ids := holders(t, u.uid, ""); len(ids) != 1 || ids[0] != holder {
		t.Fatalf("holders %v, want only the adopted %s", ids, holder)
	}

	g.setConfig(t, map[string]string{"network_linger": "0s"})
	g.restart(t)
	if ids := holders(t, u.uid, ""); len(ids) != 0 {
		t.Fatalf("network_linger 0: holders %v left after the start", ids)
	}
	b := g.startSSH(t, u, "rp", "echo up; sleep 60")
	b.waitOutput(t, "up", timeoutLong)
	defer b.stop()
	if mode := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", containers(t, u.uid, "rp")[0]); mode != fmt.Sprintf("ds01-u%d", u.uid) {
		t.Errorf("network_linger 0: NetworkMode %q, want the user's network", mode)
	}
	time.Sleep(time.Second)
	if ids := holders(t, u.uid, ""); len(ids) != 0 {
		t.Errorf("network_linger 0: holder %v made", ids)
	}
}

// user remove --purge removes the user's holders, then the network.
func TestHolderPurge(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "max", 28505, 28505)
	firstColdStart(t, g, u, "pp")
	out, err := exec.Command(gatewayBin, "user", "remove", "max", "--purge", "--config", g.cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("purge with only a holder running: %v\n%s", err, out)
	}
	if ids := listContainers(t, u.uid, "", true); len(ids) != 0 {
		t.Errorf("left after purge: %v", ids)
	}
	if !strings.Contains(string(out), "removed network") {
		t.Errorf("network not removed:\n%s", out)
	}
}

// A new project's first login builds its image, and the holder is made
// during the build: that first container already joins it.
func TestHolderFirstLoginJoins(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "nia", 28506, 28506)
	b := g.startSSH(t, u, "np", "echo up; sleep 60")
	b.waitOutput(t, "up", timeoutLong)
	defer b.stop()
	hs := waitHolders(t, u.uid, "np", 1, timeoutShort)
	ids := containers(t, u.uid, "np")
	if len(ids) != 1 {
		t.Fatalf("containers %v", ids)
	}
	if mode := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", ids[0]); mode != "container:"+hs[0] {
		t.Errorf("first login's NetworkMode %q, want container:%s (the holder made during the build)", mode, hs[0])
	}
}

// After a host reboot (every holder gone while the gateway was down) the
// gateway makes the holders of the projects used lately again at start,
// so their first cold login joins one.
func TestHolderWarmAfterReboot(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "ola", 28507, 28507)
	old := firstColdStart(t, g, u, "wp")
	g.stop(t)
	docker(t, "rm", "-f", old)
	g.start(t)
	hs := waitHolders(t, u.uid, "wp", 1, timeoutShort)
	if hs[0] == old {
		t.Fatalf("holder %s survived its removal", old)
	}
	b := g.startSSH(t, u, "wp", "echo up; sleep 60")
	b.waitOutput(t, "up", timeoutLong)
	defer b.stop()
	if mode := docker(t, "inspect", "-f", "{{.HostConfig.NetworkMode}}", containers(t, u.uid, "wp")[0]); mode != "container:"+hs[0] {
		t.Errorf("cold login after the reboot: NetworkMode %q, want container:%s", mode, hs[0])
	}
	if ids := holders(t, u.uid, ""); len(ids) != 1 {
		t.Errorf("holders %v, want the one made at start", ids)
	}
}
