package docker

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// ptyOutput collects a terminal session's output while it streams.
type ptyOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int64
	done chan error
}

func (o *ptyOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n += int64(len(b))
	if o.buf.Len() < 1<<16 {
		o.buf.Write(b)
	}
	return len(b), nil
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *ptyOutput) waitFor(t *testing.T, want string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(o.String(), want) {
			return
		}
	}
	t.Fatalf("no %q in %q", want, o.String())
}

func startPty(t *testing.T, d *Docker, id, script string) (runtime.Process, *ptyOutput) {
	t.Helper()
	p, err := d.Exec(context.Background(), id, runtime.ExecSpec{
		User: "1000:1000", Tty: true, Rows: 33, Cols: 111, Dir: "/",
		Env: []string{"TERM=xterm-ds01"}, Cmd: []string{"/bin/sh", "-c", script},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*ptyProcess); !ok {
		t.Fatalf("Exec with a terminal gave %T, want the gateway's own pty", p)
	}
	t.Cleanup(func() { p.Close() })
	o := &ptyOutput{done: make(chan error, 1)}
	go func() { o.done <- p.Stream(o, io.Discard) }()
	return p, o
}

func (o *ptyOutput) end(t *testing.T, p runtime.Process) runtime.ExitStatus {
	t.Helper()
	select {
	case err := <-o.done:
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("stream still open; output %q", o.String())
	}
	st, err := p.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A terminal session gets its own pty as controlling terminal, sized and
// owned as under sshd, and its exit status, resize and hangup are exact.
func TestPtyOfRealContainer(t *testing.T) {
	d := engine(t)
	id := launchIdle(t, d)

	t.Run("terminal", func(t *testing.T) {
		p, o := startPty(t, d, id, `tty; stty size; echo "T=$TERM";
			read -r pid comm st ppid pgrp sid ttynr rest </proc/$$/stat; echo "leader=$((pid == sid)) ctty=$((ttynr != 0))"
			stat -c 'own=%u:%g:%a' "$(tty)"; exit 7`)
		if st := o.end(t, p); st.Code != 7 || st.Signal != 0 {
			t.Errorf("exit 7: got %+v", st)
		}
		out := o.String()
		for _, want := range []string{"/dev/pts/", "33 111\r\n", "T=xterm-ds01\r\n", "leader=1 ctty=1", "own=1000:5:620"} {
			if !strings.Contains(out, want) {
				t.Errorf("want %q in %q", want, out)
			}
		}
	})

	t.Run("resize_hangup", func(t *testing.T) {
		p, o := startPty(t, d, id, `trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done`)
		o.waitFor(t, "ready")
		if err := p.Resize(context.Background(), 20, 70); err != nil {
			t.Fatal(err)
		}
		o.waitFor(t, "20 70")
		if err := p.Hangup(); err != nil {
			t.Fatal(err)
		}
		if st := o.end(t, p); st.Signal != syscall.SIGHUP {
			t.Errorf("after hangup: %+v, want SIGHUP", st)
		}
	})

	t.Run("signal", func(t *testing.T) {
		p, o := startPty(t, d, id, `kill -9 $$`)
		if st := o.end(t, p); st.Signal != syscall.SIGKILL {
			t.Errorf("kill -9 $$: %+v", st)
		}
	})

	t.Run("bulk", func(t *testing.T) {
		p, o := startPty(t, d, id, `head -c 10485760 /dev/zero`)
		if st := o.end(t, p); st.Code != 0 {
			t.Errorf("exit: %+v", st)
		}
		if o.n != 10<<20 {
			t.Errorf("got %d bytes, want %d", o.n, 10<<20)
		}
	})

	t.Run("background_child", func(t *testing.T) {
		start := time.Now()
		p, o := startPty(t, d, id, `sleep 60 & echo started`)
		if st := o.end(t, p); st.Code != 0 {
			t.Errorf("exit: %+v", st)
		}
		if !strings.Contains(o.String(), "started") {
			t.Errorf("output %q", o.String())
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("stream ended %s after start", el)
		}
	})
}
