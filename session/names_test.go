package session

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateProject(t *testing.T) {
	ok := []string{"a", "my-thesis", "x_1", "0day", strings.Repeat("a", 63)}
	bad := []string{"", "../x", "A", "My", "a b", "x;id", "$(id)", "-x", "_x", "a/b", "a.b", "ds01", strings.Repeat("a", 64), "é", "a\nb"}
	for _, n := range ok {
		if err := ValidateProject(n, "ds01"); err != nil {
			t.Errorf("%q rejected: %v", n, err)
		}
	}
	for _, n := range bad {
		err := ValidateProject(n, "ds01")
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q accepted (err %v)", n, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error must be one line: %q", n, err)
		}
	}
}

func TestValidateUser(t *testing.T) {
	for _, n := range []string{"alice", "_svc", "a-b", "root"} {
		if err := ValidateUser(n); err != nil {
			t.Errorf("%q rejected: %v", n, err)
		}
	}
	for _, n := range []string{"", "Alice", "1abc", "a:b", "a b", strings.Repeat("a", 33)} {
		if err := ValidateUser(n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}
