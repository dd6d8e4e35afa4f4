package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// The gateway's tests run it in-process against this fake session layer,
// with a real x/crypto client: the protocol is real, the containers are
// not (e2e/ drives real ones with OpenSSH).

// fakeUsers maps key fingerprints to users.
type fakeUsers struct {
	mu   sync.Mutex
	keys map[string]store.User
}

func (f *fakeUsers) UserByKey(_ context.Context, fp string) (store.User, store.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.keys[fp]
	if !ok {
		return store.User{}, store.Key{}, store.ErrNotFound
	}
	return u, store.Key{User: u.Name, Fingerprint: fp}, nil
}

// attachCall records one Attach.
type attachCall struct {
	user    string
	project string
	want    session.Want
}

// fakeSessions is the session layer: every Attach gets a fakeLease.
type fakeSessions struct {
	mu       sync.Mutex
	attaches []attachCall
	// attach, when set, runs first in Attach: it may block (a build, the
	// GPU queue), fail or panic.
	attach func(ctx context.Context, project string) error
	// dial and listen serve the leases' Dial and Listen.
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	dialed  []string
	listen  func(network, addr string) (net.Listener, error)
	procs   chan *fakeProc           // every process started, in order
	signal  func(sig syscall.Signal) // runs in Signal; may block
	leases  int                      // held now
	touches int                      // Lease.Touch calls, all leases
	retired chan struct{}
	// launched is what the leases' Launched says: a cold login.
	launched bool
}

func newFakeSessions() *fakeSessions {
	return &fakeSessions{procs: make(chan *fakeProc, 100), retired: make(chan struct{})}
}

func (f *fakeSessions) Attach(ctx context.Context, u store.User, project string, want session.Want, notice io.Writer) (Lease, error) {
	f.mu.Lock()
	f.attaches = append(f.attaches, attachCall{u.Name, project, want})
	hook := f.attach
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, project); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	f.leases++
	f.mu.Unlock()
	return &fakeLease{f: f, u: u}, nil
}

func (f *fakeSessions) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leases
}

func (f *fakeSessions) touched() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.touches
}

func (f *fakeSessions) calls() []attachCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]attachCall(nil), f.attaches...)
}

func (f *fakeSessions) FileMounts(context.Context, store.User, string) ([]session.FileMount, error) {
	return nil, errors.New("fake: no workspaces")
}

func (f *fakeSessions) RecordTransfer(context.Context, store.User, string, string, session.TransferStats, time.Duration) {
}

func (f *fakeSessions) RunTransfer(context.Context, store.User, string, session.TransferCommand, io.Reader, io.Writer, io.Writer) (runtime.ExitStatus, error) {
	return runtime.ExitStatus{}, errors.New("fake: no transfers")
}

type fakeLease struct {
	f        *fakeSessions
	u        store.User
	released sync.Once
}

func (l *fakeLease) Exec(ctx context.Context, spec runtime.ExecSpec) (runtime.Process, error) {
	cmd := strings.Join(spec.Cmd, " ")
	if strings.HasSuffix(cmd, "panic") {
		panic("fake: exec panics")
	}
	p := newFakeProc(spec, l.f.signal)
	l.f.procs <- p
	return p, nil
}

func (l *fakeLease) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l.f.mu.Lock()
	l.f.dialed = append(l.f.dialed, addr)
	dial := l.f.dial
	l.f.mu.Unlock()
	if dial == nil {
		return nil, errors.New("connection refused")
	}
	return dial(ctx, network, addr)
}

func (l *fakeLease) Listen(_ context.Context, network, addr string) (net.Listener, error) {
	if l.f.listen == nil {
		return nil, errors.New("fake: no listen")
	}
	return l.f.listen(network, addr)
}

func (l *fakeLease) SocketDir() (string, string, bool) { return "", "", false }
func (l *fakeLease) User() store.User                  { return l.u }
func (l *fakeLease) Shell() string                     { return "/bin/fakesh" }
func (l *fakeLease) Retired() <-chan struct{}          { return l.f.retired }
func (l *fakeLease) RetiredWhy() string                { return "retired by test" }

// Launched is *session.Lease's: the gateway asks for it to time a cold
// login.
func (l *fakeLease) Launched() bool {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	return l.f.launched
}

func (l *fakeLease) Touch() {
	l.f.mu.Lock()
	l.f.touches++
	l.f.mu.Unlock()
}

func (l *fakeLease) Release() {
	l.released.Do(func() {
		l.f.mu.Lock()
		l.f.leases--
		l.f.mu.Unlock()
	})
}

// fakeProc runs a tiny command language instead of a shell: the last word
// of the argv ("sh -c CMD") is the command.
//
//	echo WORDS   prints WORDS
//	err WORDS    prints WORDS on stderr
//	exit N       exits N
//	cat          copies stdin to stdout until EOF
//	wait         runs until a signal (exit 128+N) or Close
type fakeProc struct {
	spec    runtime.ExecSpec
	cmd     string
	inR     *io.PipeReader
	inW     *io.PipeWriter
	outR    *io.PipeReader
	outW    *io.PipeWriter
	errR    *io.PipeReader
	errW    *io.PipeWriter
	sigs    chan syscall.Signal // to the running command
	got     chan syscall.Signal // every signal, for the test
	resizes chan [2]uint32
	hook    func(syscall.Signal)

	done      chan struct{}
	status    runtime.ExitStatus
	closeOnce sync.Once
	closed    chan struct{}
}

func newFakeProc(spec runtime.ExecSpec, hook func(syscall.Signal)) *fakeProc {
	p := &fakeProc{spec: spec, sigs: make(chan syscall.Signal, 32), got: make(chan syscall.Signal, 32), resizes: make(chan [2]uint32, 32),
		hook: hook, done: make(chan struct{}), closed: make(chan struct{})}
	if len(spec.Cmd) > 0 {
		p.cmd = spec.Cmd[len(spec.Cmd)-1]
	}
	p.inR, p.inW = io.Pipe()
	p.outR, p.outW = io.Pipe()
	p.errR, p.errW = io.Pipe()
	go p.run()
	return p
}

func (p *fakeProc) run() {
	word, arg, _ := strings.Cut(p.cmd, " ")
	code := 0
	switch word {
	case "echo":
		fmt.Fprintln(p.outW, arg)
	case "err":
		fmt.Fprintln(p.errW, arg)
	case "exit":
		code, _ = strconv.Atoi(arg)
	case "cat":
		io.Copy(p.outW, p.inR)
	case "wait", "-l": // -l: a login shell, which waits for the user
		select {
		case sig := <-p.sigs:
			code = 128 + int(sig)
		case <-p.closed:
		}
	case "env":
		fmt.Fprintln(p.outW, strings.Join(p.spec.Env, "\n"))
	}
	p.status = runtime.ExitStatus{Code: code}
	if code > 128 && code < 160 {
		p.status.Signal = syscall.Signal(code - 128)
	}
	p.outW.Close()
	p.errW.Close()
	close(p.done)
}

func (p *fakeProc) Stdin() io.WriteCloser { return p.inW }

func (p *fakeProc) Stream(stdout, stderr io.Writer) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(stdout, p.outR) }()
	go func() { defer wg.Done(); io.Copy(stderr, p.errR) }()
	wg.Wait()
	return nil
}

func (p *fakeProc) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-p.done:
		return p.status, nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}

func (p *fakeProc) Signal(sig syscall.Signal) error {
	if p.hook != nil {
		p.hook(sig)
	}
	select {
	case p.got <- sig:
	default:
	}
	select {
	case p.sigs <- sig:
	default:
	}
	return nil
}

func (p *fakeProc) Hangup() error { return p.Signal(syscall.SIGHUP) }

func (p *fakeProc) Resize(_ context.Context, rows, cols uint32) error {
	p.resizes <- [2]uint32{rows, cols}
	return nil
}

func (p *fakeProc) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.inR.Close()
		p.outR.Close()
		p.errR.Close()
	})
	return nil
}

// fakeCommands serves the command login's listings from a fixed list.
type fakeCommands struct {
	commands.Service // anything else panics: the tests do not use it
}

func (fakeCommands) Projects(context.Context, store.User) ([]session.ProjectInfo, error) {
	return []session.ProjectInfo{{Name: "thesis"}}, nil
}
