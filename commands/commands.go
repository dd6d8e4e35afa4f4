// Package commands runs the gateway's built-in commands, the ones users
// reach with `ssh ds01@host <command>`: image-create, image-update,
// container-retire and the rest. They run in the gateway itself, never in
// a container, and act only on the authenticated user's own projects.
//
// Exit codes: 0 ok, 1 failed, 2 usage error. Listings go to stdout (with
// --format json for scripts); notices, progress and errors go to stderr.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Env is one command's world: who runs it and where its streams go.
type Env struct {
	Service Service
	User    store.User
	// Login and Host make hints users can paste: "ssh ds01@host ...".
	Login, Host string
	Stdin       io.Reader // nil when standard input is not available
	Stdout      io.Writer
	Stderr      io.Writer
	// Prompt asks the user for one line on their terminal; nil without
	// a terminal.
	Prompt func(prompt string) (string, error)
	// InShell is set inside the interactive shell, where hints name the
	// command alone.
	InShell bool
	// Admin is set for a member of admin_group (lead: H1 adds the same
	// field; keep one).
	Admin bool
}

// hint is how the user runs a command from where they are.
func (e *Env) hint(cmd string) string {
	if e.InShell {
		return cmd
	}
	return fmt.Sprintf("ssh %s@%s %s", e.Login, e.Host, cmd)
}

func (e *Env) notef(format string, args ...any) {
	fmt.Fprintf(e.Stderr, "ds01: "+format+"\n", args...)
}

// usageError is a mistake in how a command was called: exit code 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// Run runs one command line, given as words, and returns its exit code.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 {
		printHelp(env.Stdout, env)
		return ExitOK
	}
	name, rest := commandName(args)
	if name == "help" || name == "--help" || name == "-h" {
		if len(rest) > 0 {
			if n, _ := commandName(rest); lookup(n) != nil {
				c := lookup(n)
				c.printUsage(env.Stdout)
				return ExitOK
			}
		}
		printHelp(env.Stdout, env)
		return ExitOK
	}
	c := lookup(name)
	if c == nil {
		env.notef("unknown command %q; %s lists the commands", strings.Join(args[:min(len(args), 2)], " "), env.hint("help"))
		return ExitUsage
	}
	p, err := c.parse(rest)
	if err == nil && p.help {
		c.printUsage(env.Stdout)
		return ExitOK
	}
	if err == nil {
		err = c.run(ctx, env, p)
	}
	return report(env, c, err)
}

// report prints err the way its kind deserves and maps it to an exit code.
func report(env *Env, c *command, err error) int {
	var ue usageError
	var be *session.BuildError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		env.notef("%s: %s", c.name, ue.msg)
		fmt.Fprintf(env.Stderr, "usage: %s\n", c.synopsis())
		return ExitUsage
	case errors.Is(err, session.ErrInvalidName):
		env.notef("%s: %v", c.name, err)
		return ExitUsage
	case errors.As(err, &be):
		env.notef("%v", be)
		msg := "the previous image and Dockerfile stay in force"
		if be.Saved != "" {
			msg += "; your attempt is saved as /workspace/" + be.Saved
		}
		env.notef("%s", msg)
		return ExitFail
	case errors.Is(err, context.Canceled):
		env.notef("%s: interrupted", c.name)
		return ExitFail
	}
	env.notef("%s: %v", c.name, err)
	return ExitFail
}

// commandName accepts both DS01's "image-update" and "image update".
func commandName(args []string) (string, []string) {
	if len(args) >= 2 && groups[args[0]] && !strings.HasPrefix(args[1], "-") {
		return args[0] + "-" + args[1], args[2:]
	}
	return args[0], args[1:]
}

// groups are the first words of two-word command names.
var groups = map[string]bool{"image": true, "container": true, "project": true}

func lookup(name string) *command {
	for _, c := range registry() {
		if c.name == name {
			return c
		}
		for _, a := range c.aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// Names lists every command name, for completion.
func Names() []string {
	var out []string
	for _, c := range registry() {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}

func printHelp(w io.Writer, env *Env) {
	fmt.Fprintf(w, "DS01 built-in commands (run as %s, or type them in the shell):\n\n", env.hint("COMMAND [ARGS]"))
	for _, c := range registry() {
		summary, _, _ := strings.Cut(c.summary, "\n")
		fmt.Fprintf(w, "  %-28s %s\n", strings.TrimSpace(c.name+" "+c.args), summary)
	}
	fmt.Fprintf(w, "\n\"image update\" works as well as \"image-update\"; COMMAND --help tells more.\n")
	fmt.Fprintf(w, "Listings take --format json. Exit codes: 0 ok, 1 failed, 2 usage error.\n")
}
