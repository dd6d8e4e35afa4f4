package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ds01/ds01-gateway/session"
)

// errCommandLogin marks the reserved login for built-in commands: it has
// no container, so nothing that needs one (forwarding, file transfer) can
// go through it.
var errCommandLogin = errors.New("runs built-in commands only; connect to PROJECT@host for a container")

// target is what a login name asks for: a project, and how many GPUs.
type target struct {
	project string
	want    session.Want
}

// maxLoginGPUs bounds "+gpus=N" before any policy looks at it.
const maxLoginGPUs = 64

// maxLogin bounds a login name: a project name (63) and its options. SSH
// allows names as long as a packet; such a name is refused before it is
// quoted into messages and logs.
const maxLogin = 128

// route turns the SSH login name into the project it names and what the
// login asks for: "proj", "proj+gpus=2", "proj+cpu" (the login name is the
// one thing VS Code lets a user vary per host). Validation happens here,
// before anything is created for the name.
func (s *Server) route(login string) (target, error) {
	if len(login) > maxLogin {
		return target{}, fmt.Errorf("%w: login name longer than %d characters", session.ErrInvalidName, maxLogin)
	}
	project, opts, _ := strings.Cut(login, "+")
	if project == s.opts.CommandLogin {
		return target{}, fmt.Errorf("%q: %w", login, errCommandLogin)
	}
	if err := session.ValidateProject(project, s.opts.CommandLogin); err != nil {
		return target{}, err
	}
	t := target{project: project, want: session.Default}
	if opts == "" {
		return t, nil
	}
	for _, o := range strings.Split(opts, "+") {
		switch v, ok := strings.CutPrefix(o, "gpus="); {
		case o == "cpu":
			t.want.GPUs = 0
		case ok:
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > maxLoginGPUs {
				return target{}, fmt.Errorf("%w: %q: want +gpus=N with N from 0 to %d", session.ErrInvalidName, o, maxLoginGPUs)
			}
			t.want.GPUs = n
		default:
			return target{}, fmt.Errorf("%w: unknown login option %q: use %s+gpus=N or %s+cpu", session.ErrInvalidName, "+"+o, project, project)
		}
	}
	return t, nil
}
