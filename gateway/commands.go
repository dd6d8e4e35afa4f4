package gateway

import (
	"context"
	"log/slog"
	"strings"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// runCommands serves a session on the command login: built-in commands,
// run by the gateway itself, never in a container.
func (sc *sessionChan) runCommands(ctx context.Context, log *slog.Logger, u store.User, keyFP string, r request) {
	if r.subsystem != "" {
		sc.fail("file transfer needs a project: use sftp PROJECT@"+sc.s.opts.PublicName, 2)
		return
	}
	env := &commands.Env{
		Service: sc.s.commands,
		User:    u,
		Login:   sc.s.opts.CommandLogin,
		Host:    sc.s.opts.PublicName,
		Stdin:   sc.ch,
		Stdout:  sc.ch,
		Stderr:  sc.ch.Stderr(),
		Admin:   sc.s.opts.IsAdmin != nil && sc.s.opts.IsAdmin(ctx, u),

		KeyFingerprint: keyFP,
		Remote:         remoteAddr(sc.gctx.RemoteAddr()).String(),
	}
	sc.mu.Lock()
	pty, win := sc.pty != nil, sc.win
	sc.mu.Unlock()
	log.Info("command", "command", strings.TrimSpace(r.command), "shell", r.shell, "pty", pty, "admin", env.Admin)
	var code int
	switch {
	case pty:
		t := commands.NewTerminal(sc.ch, sc.ch, int(win.Cols), int(win.Rows))
		go sc.followWindow(ctx, func(w window) { t.Resize(int(w.Cols), int(w.Rows)) })
		if r.shell {
			code = t.Shell(ctx, env)
			break
		}
		words, err := commands.SplitCommand(r.command)
		if err != nil {
			sc.fail(err.Error(), commands.ExitUsage)
			return
		}
		code = t.Exec(ctx, env, words)
	case r.shell:
		code = commands.RunScript(ctx, env, sc.ch)
	default:
		code = commands.RunLine(ctx, env, r.command)
	}
	if ctx.Err() != nil {
		return
	}
	sc.exit(runtime.ExitStatus{Code: code})
}
