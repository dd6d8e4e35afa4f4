package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// E2E uids of these tests: 21100-21199.

// Twenty unauthenticated connections with 30 KB login names, each trying
// six keys nobody registered, write a bounded log (the old gateway wrote
// 3.6 MB in 80 ms).
func TestPreauthLogFlood(t *testing.T) {
	g := startGateway(t, gwOpts{Extra: map[string]string{"max_startups_per_source": "20"}})
	name := strings.Repeat("A", 30000) + "\nlevel=ERROR msg=forged"
	before := len(g.out.String())
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var keys []ssh.Signer
			for range 6 {
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				s, _ := ssh.NewSignerFromKey(priv)
				keys = append(keys, s)
			}
			c, err := ssh.Dial("tcp", g.addr(), &ssh.ClientConfig{
				User: name, Auth: []ssh.AuthMethod{ssh.PublicKeys(keys...)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
			})
			if err == nil {
				c.Close()
				t.Error("unknown keys got in")
			}
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	logged := g.out.String()[before:]
	t.Logf("%d bytes of log for 20 connections with 30 KB names", len(logged))
	if len(logged) > 16<<10 {
		t.Errorf("%d bytes of log for 20 failed connections:\n%s", len(logged), lastLines(logged, 5))
	}
	if strings.Contains(logged, strings.Repeat("A", 100)) {
		t.Error("a 30 KB login name went into the log whole")
	}
}

// Beyond max_startups_per_source connections that have not authenticated,
// a new one from that source is closed at once; users already logged in
// keep working, and users from other addresses get in.
func TestMaxStartupsPerSource(t *testing.T) {
	g := startGateway(t, gwOpts{Extra: map[string]string{"max_startups_per_source": "3", "handshake_timeout": "60s"}})
	u := g.addUser(t, "pia", 21101, 21101)
	const proj = "pre"
	in := g.startSSH(t, u, proj, "echo up; cat")
	in.waitOutput(t, "up", timeoutLong)

	// Three connections that never authenticate, from 127.0.0.1.
	for range 3 {
		c, err := net.Dial("tcp", g.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 8)); err != nil {
			t.Fatalf("an idle connection got no banner: %v", err)
		}
	}
	start := time.Now()
	r := runSSH(t, timeoutShort, nil, append(g.sshArgs(u.key, proj), "true")...)
	if r.code == 0 {
		t.Fatalf("a fourth connection from the same source got in: %s", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refused connection took %v to end", d)
	}
	if !strings.Contains(g.out.String(), "max_startups_per_source") {
		t.Error("the refusal is not logged with its reason")
	}

	// The session already in is unaffected.
	fmt.Fprintln(in.stdin, "ping")
	in.waitOutput(t, "ping", timeoutShort)

	// Another source address gets in.
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", g.addr()); err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	} else {
		c.Close()
	}
	r = runSSH(t, timeoutShort, nil, append(g.sshArgs(u.key, proj, "-b", "127.0.0.2"), "echo from-elsewhere")...)
	if r.code != 0 || r.stdout != "from-elsewhere\n" {
		t.Errorf("a login from another address: %s", r)
	}
}
