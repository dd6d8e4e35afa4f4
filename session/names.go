// Package session owns the life of project containers: it creates projects
// on first use, launches one container per (user, project), lets every
// connection of that user share it, and retires it after the last one
// leaves. It also reconciles what the runtime runs with the store after a
// restart.
package session

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalidName is wrapped by every name validation failure.
var ErrInvalidName = errors.New("invalid name")

var projectRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateProject checks a project name: lowercase letters, digits, '-' and
// '_', 1 to 63 characters, starting with a letter or digit. The name becomes
// a path, an image name and a hostname, so nothing else may pass.
func ValidateProject(name, commandLogin string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty project name", ErrInvalidName)
	case name == commandLogin:
		return fmt.Errorf("%w: %q is reserved for built-in commands", ErrInvalidName, name)
	case len(name) > 63:
		return fmt.Errorf("%w: project name longer than 63 characters", ErrInvalidName)
	case !projectRE.MatchString(name):
		return fmt.Errorf("%w: project name %q: use lowercase letters, digits, '-' and '_', starting with a letter or digit", ErrInvalidName, name)
	}
	return nil
}

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidateUser checks a user name in the portable POSIX style; it ends up in
// /etc/passwd inside containers and in paths on the host.
func ValidateUser(name string) error {
	if !userRE.MatchString(name) {
		return fmt.Errorf("%w: user name %q: use 1-32 lowercase letters, digits, '-' and '_', starting with a letter or '_'", ErrInvalidName, name)
	}
	return nil
}
