package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// helperExec is one running `pod-helper` command with its stdin and
// stdout as pipes. Its context outlives the caller's: the command lasts
// as long as the connection or listener built on it.
type helperExec struct {
	stdin  *io.PipeWriter
	stdout *io.PipeReader
	stderr *limitedBuffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the exec's end, once done is closed
}

func (k *Kube) startHelper(ctx context.Context, pod string, args ...string) *helperExec {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h := &helperExec{stdin: inW, stdout: outR, stderr: &limitedBuffer{max: 4 << 10}, cancel: cancel, done: make(chan struct{})}
	cmd := append([]string{helperBinary, "pod-helper"}, args...)
	go func() {
		err := k.stream(sctx, pod, helperContainer, cmd, Stream{Stdin: inR, Stdout: outW, Stderr: h.stderr})
		h.err = err
		close(h.done)
		// EOF to a stdin copier client-go may still run, which would log
		// a closed pipe as an error; our own writes fail from now on.
		inW.Close()
		outW.Close()
	}()
	return h
}

// failure is why the command ended: its own message on stderr first.
func (k *Kube) failure(ctx context.Context, pod string, h *helperExec, what string) error {
	<-h.done
	msg := strings.TrimSpace(h.stderr.String())
	msg = strings.TrimPrefix(msg, "pod-helper: ")
	switch {
	case msg != "":
		return fmt.Errorf("%s in pod %s: %s", what, pod, msg)
	case h.err != nil:
		return k.podErr(ctx, pod, fmt.Errorf("%s in pod %s: %w", what, pod, h.err))
	}
	return fmt.Errorf("%s in pod %s: the pod helper ended", what, pod)
}

// stop ends the command: stdin's EOF lets it clean up (a listener's
// socket file), and a command that does not end soon is cut off.
func (h *helperExec) stop() {
	h.stdin.Close()
	go func() {
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
		}
		h.cancel()
	}()
}

// helperRun runs a short pod-helper command and returns its output.
func (k *Kube) helperRun(ctx context.Context, pod string, args ...string) (string, error) {
	var out bytes.Buffer
	errOut := &limitedBuffer{max: 4 << 10}
	cmd := append([]string{helperBinary, "pod-helper"}, args...)
	err := k.stream(ctx, pod, helperContainer, cmd, Stream{Stdout: &out, Stderr: errOut})
	if err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			return "", fmt.Errorf("pod helper %s in pod %s: %s", args[0], pod, strings.TrimPrefix(msg, "pod-helper: "))
		}
		return "", k.podErr(ctx, pod, fmt.Errorf("pod helper %s in pod %s: %w", args[0], pod, err))
	}
	return out.String(), nil
}

// podErr is err, or runtime.ErrNotRunning when the pod is gone or no
// longer runs: asked only on the failure path.
func (k *Kube) podErr(ctx context.Context, pod string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	p, gerr := k.c.Clientset.CoreV1().Pods(k.cfg.Namespace).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(gerr) || gerr == nil && (p.DeletionTimestamp != nil || p.Status.Phase != "Running") {
		return fmt.Errorf("pod %s: %w", pod, runtime.ErrNotRunning)
	}
	if gerr == nil && !hasContainer(p.Spec.Containers, helperContainer) && strings.Contains(err.Error(), helperContainer) {
		return fmt.Errorf("pod %s has no helper (it started before the gateway had one): %w", pod, err)
	}
	return err
}

// helperDial connects through `pod-helper dial`: the connection is the
// command's stdin and stdout. It waits for the helper's "+", so a refused
// dial is an error here, as with Docker.
func (k *Kube) helperDial(ctx context.Context, pod, network, address string) (net.Conn, error) {
	h := k.startHelper(ctx, pod, "dial", network, address)
	ok := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(h.stdout, b[:])
		if err == nil && b[0] != '+' {
			err = fmt.Errorf("unexpected %q", b[0])
		}
		ok <- err
	}()
	select {
	case err := <-ok:
		if err != nil {
			h.stop()
			return nil, k.failure(ctx, pod, h, "dial "+address)
		}
	case <-ctx.Done():
		h.stop()
		h.cancel()
		return nil, ctx.Err()
	}
	return &helperConn{h: h, network: network, address: address}, nil
}

// helperConn is a dialled connection over a pod-helper's stdin/stdout.
type helperConn struct {
	h                *helperExec
	network, address string
	once             sync.Once
}

func (c *helperConn) Read(p []byte) (int, error)  { return c.h.stdout.Read(p) }
func (c *helperConn) Write(p []byte) (int, error) { return c.h.stdin.Write(p) }

// CloseWrite closes the command's stdin: the helper half-closes its
// connection (the WebSocket protocol passes stdin's EOF on).
func (c *helperConn) CloseWrite() error { return c.h.stdin.Close() }

func (c *helperConn) Close() error {
	c.once.Do(func() {
		c.h.stdin.Close()
		// Drained rather than closed: a write into a closed pipe would
		// have client-go log an error for an ordinary close.
		go io.Copy(io.Discard, c.h.stdout)
		c.h.cancel()
	})
	return nil
}

func (c *helperConn) LocalAddr() net.Addr  { return pfAddr("gateway") }
func (c *helperConn) RemoteAddr() net.Addr { return pfAddr(c.address) }

func (c *helperConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *helperConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *helperConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

// limitedBuffer keeps the first max bytes written to it: a command's
// stderr, for its error message.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
