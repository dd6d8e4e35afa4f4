package commands

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"

	"github.com/anmitsu/go-shlex"
	"golang.org/x/term"
)

// SplitCommand turns an SSH exec request into words, honouring quotes the
// user sent through. A control character (a newline above all) is refused
// outright: no command has a use for one, and it is the classic way to
// smuggle a second instruction into a generated file.
func SplitCommand(s string) ([]string, error) {
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' {
			return nil, usagef("the command contains a control character (%U)", r)
		}
	}
	words, err := shlex.Split(s, true)
	if err != nil {
		return nil, usagef("cannot split the command: %v", err)
	}
	return words, nil
}

// RunLine splits and runs one command line.
func RunLine(ctx context.Context, env *Env, line string) int {
	words, err := SplitCommand(line)
	if err != nil {
		env.notef("%v", err)
		return ExitUsage
	}
	return Run(ctx, env, words)
}

// RunScript runs command lines read from r (a shell session without a
// terminal: ssh ds01@host < script), stopping at the first failure.
func RunScript(ctx context.Context, env *Env, r io.Reader) int {
	sc := bufio.NewScanner(io.LimitReader(r, maxInput))
	env.Stdin = nil // the script is stdin
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if code := RunLine(ctx, env, line); code != ExitOK {
			return code
		}
	}
	return ExitOK
}

// Terminal is the user's terminal on the command login: line editing,
// history and completion for the shell and for commands' prompts, and ^C
// to interrupt the command that runs.
type Terminal struct {
	t  *term.Terminal
	in *input
	h  *history
}

// NewTerminal reads keys from r and draws on w.
func NewTerminal(r io.Reader, w io.Writer, cols, rows int) *Terminal {
	in := newInput(r)
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, w}, "")
	_ = t.SetSize(cols, rows) // nothing drawn yet: no write to fail
	h := &history{}
	t.History = h
	return &Terminal{t: t, in: in, h: h}
}

// Resize follows the client's window.
// A failed redraw means the client is gone; the session ends on its own.
func (t *Terminal) Resize(cols, rows int) { _ = t.t.SetSize(cols, rows) }

// prompt reads a line for a running command; ^C there interrupts the
// command, which also ends the prompt.
func (t *Terminal) prompt(p string) (string, error) {
	t.t.SetPrompt(p)
	return t.t.ReadLine()
}

// bind points env's streams at the terminal.
func (t *Terminal) bind(env *Env) {
	env.Stdout, env.Stderr, env.Stdin = t.t, t.t, nil
	env.Prompt = t.prompt
}

// Exec runs one command on the terminal (ssh -t ds01@host image-update p),
// so its prompts and menus work.
func (t *Terminal) Exec(ctx context.Context, env *Env, words []string) int {
	t.bind(env)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.in.set(modeCommand, cancel)
	return Run(ctx, env, words)
}

// Shell is the interactive shell: read a command, run it, until exit or
// ^D. It returns the last command's exit code.
func (t *Terminal) Shell(ctx context.Context, env *Env) int {
	t.bind(env)
	env.InShell = true
	var projects []string
	refresh := func() {
		projects = projects[:0]
		if ps, err := env.Service.Projects(ctx, env.User); err == nil {
			for _, p := range ps {
				projects = append(projects, p.Name)
			}
		}
	}
	refresh()
	t.t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		if key != '\t' {
			return "", 0, false
		}
		return complete(line, pos, projects)
	}
	fmt.Fprintf(t.t, "DS01 gateway, commands for %s. Type help, or exit. Tab completes.\n", env.User.Name)
	code := ExitOK
	for ctx.Err() == nil {
		t.in.set(modeLine, nil)
		t.t.SetPrompt("ds01> ")
		line, err := t.t.ReadLine()
		if err != nil {
			fmt.Fprintln(t.t)
			return code
		}
		line = strings.TrimSpace(line)
		switch line {
		case "":
			continue
		case "exit", "quit", "logout":
			return code
		case "history":
			for i := t.h.Len() - 1; i >= 0; i-- {
				fmt.Fprintf(t.t, "%4d  %s\n", t.h.Len()-i, t.h.At(i))
			}
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		t.in.set(modeCommand, cancel)
		code = RunLine(cctx, env, line)
		cancel()
		refresh()
	}
	return code
}

// complete extends the word before the cursor: a command name first,
// then options of that command or project names.
func complete(line string, pos int, projects []string) (string, int, bool) {
	before, after := line[:pos], line[pos:]
	words := strings.Fields(before)
	cur := ""
	if len(words) > 0 && !strings.HasSuffix(before, " ") {
		cur = words[len(words)-1]
		words = words[:len(words)-1]
	}
	var cands []string
	switch {
	case len(words) == 0:
		cands = append(Names(), "help", "history", "exit")
		for g := range groups {
			cands = append(cands, g)
		}
	case len(words) == 1 && groups[words[0]]:
		for _, n := range Names() {
			if rest, ok := strings.CutPrefix(n, words[0]+"-"); ok {
				cands = append(cands, rest)
			}
		}
	case strings.HasPrefix(cur, "-"):
		name, _ := commandName(words)
		if c := lookup(name); c != nil {
			for _, f := range c.flags {
				cands = append(cands, f.name)
			}
		}
	default:
		cands = projects
	}
	var match []string
	for _, c := range cands {
		if strings.HasPrefix(c, cur) {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		return "", 0, false
	}
	ext := match[0]
	for _, m := range match[1:] {
		for !strings.HasPrefix(m, ext) {
			ext = ext[:len(ext)-1]
		}
	}
	if len(match) == 1 {
		ext += " "
	}
	if ext == cur {
		return "", 0, false
	}
	head := before[:len(before)-len(cur)] + ext
	return head + after, len(head), true
}

// history is the shell's command history, newest last.
type history struct{ lines []string }

const maxHistoryLines = 200

func (h *history) Add(s string) {
	if n := len(h.lines); n > 0 && h.lines[n-1] == s {
		return
	}
	h.lines = append(h.lines, s)
	if len(h.lines) > maxHistoryLines {
		h.lines = h.lines[1:]
	}
}
func (h *history) Len() int          { return len(h.lines) }
func (h *history) At(idx int) string { return h.lines[len(h.lines)-1-idx] }

// input sits between the client and the line editor. At a prompt, ^C
// clears the line (the editor would take it as end of input); while a
// command runs, ^C interrupts it.
type input struct {
	mu     sync.Mutex
	buf    []byte
	err    error
	ready  chan struct{}
	mode   int
	cancel context.CancelFunc
}

const (
	modeLine = iota
	modeCommand
)

// ctrlC and its stand-in at a prompt: ^E (end of line) then ^U (delete
// to the start of the line).
var (
	ctrlC     = []byte{3}
	clearLine = []byte{5, 21}
)

func newInput(r io.Reader) *input {
	in := &input{ready: make(chan struct{}, 1), mode: modeCommand}
	go in.pump(r)
	return in
}

func (in *input) pump(r io.Reader) {
	b := make([]byte, 4096)
	for {
		n, err := r.Read(b)
		in.mu.Lock()
		chunk := b[:n]
		if bytes.Contains(chunk, ctrlC) {
			if in.mode == modeCommand && in.cancel != nil {
				in.cancel()
				// A prompt of the interrupted command must end too.
				chunk = ctrlC
			} else if in.mode == modeLine {
				chunk = bytes.ReplaceAll(chunk, ctrlC, clearLine)
			}
		}
		in.buf = append(in.buf, chunk...)
		if err != nil {
			in.err = err
		}
		in.mu.Unlock()
		select {
		case in.ready <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// set switches between the shell's prompt (modeLine) and a running
// command that ^C cancels.
func (in *input) set(mode int, cancel context.CancelFunc) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if mode == modeLine {
		// Back at the prompt: a ^C meant for the command is spent.
		in.buf = bytes.ReplaceAll(in.buf, ctrlC, nil)
	}
	in.mode, in.cancel = mode, cancel
}

func (in *input) Read(p []byte) (int, error) {
	for {
		in.mu.Lock()
		if len(in.buf) > 0 {
			n := copy(p, in.buf)
			in.buf = in.buf[n:]
			in.mu.Unlock()
			return n, nil
		}
		if in.err != nil {
			err := in.err
			in.mu.Unlock()
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		in.mu.Unlock()
		<-in.ready
	}
}
