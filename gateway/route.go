package gateway

import (
	"errors"
	"fmt"

	"github.com/ds01/ds01-gateway/session"
)

// errCommandLogin marks the reserved login for built-in commands: it has
// no container, so nothing that needs one (forwarding, file transfer) can
// go through it.
var errCommandLogin = errors.New("runs built-in commands only; connect to PROJECT@host for a container")

// route turns the SSH login name into the project it names. Validation
// happens here, before anything is created for the name.
func (s *Server) route(login string) (string, error) {
	if login == s.opts.CommandLogin {
		return "", fmt.Errorf("%q: %w", login, errCommandLogin)
	}
	if err := session.ValidateProject(login, s.opts.CommandLogin); err != nil {
		return "", err
	}
	return login, nil
}
