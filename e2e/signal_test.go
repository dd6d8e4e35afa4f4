package e2e

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A "signal" request reaches the process, and its death comes back as
// exit-signal. OpenSSH's client cannot send signal requests, so this uses
// the x/crypto client.
func TestSignalRequest(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "sig", 20131, 20131)
	const proj = "signals"
	g.mustSSH(t, u, proj, "true") // build outside the timed part

	client, err := g.goClient(t, u.key, proj)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, tc := range []struct {
		cmd  string
		sig  ssh.Signal
		want string
	}{
		{"echo ready; exec sleep 100", ssh.SIGTERM, "TERM"},
		// A shell that traps the signal decides for itself: exit status 42.
		{"trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done", ssh.SIGUSR1, "status 42"},
	} {
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Start(tc.cmd); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "ready") {
			t.Fatalf("%q: no ready: %q %v", tc.cmd, buf, err)
		}
		if err := sess.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- sess.Wait() }()
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%q: still running 20 s after %s", tc.cmd, tc.sig)
		}
		var ee *ssh.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%q: want an exit error, got %v", tc.cmd, err)
		}
		got := ee.Signal()
		if got == "" {
			got = "status " + strconv.Itoa(ee.ExitStatus())
		}
		if got != tc.want {
			t.Errorf("%q after %s: got %s, want %s", tc.cmd, tc.sig, got, tc.want)
		}
		sess.Close()
	}
}
