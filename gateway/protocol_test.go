package gateway

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/session"
)

func TestEnvAllowed(t *testing.T) {
	for name, want := range map[string]bool{
		"LANG": true, "LC_ALL": true, "LC_CTYPE": true, "TERM": true, "COLORTERM": true, "GIT_PROTOCOL": true,
		"LC_": false, "PATH": false, "LD_PRELOAD": false, "HOME": false, "BASH_ENV": false, "lang": false,
	} {
		if got := envAllowed(name); got != want {
			t.Errorf("envAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		shell   string
		shellRq bool
		cmd     string
		want    []string
	}{
		{"/bin/bash", true, "", []string{"/bin/bash", "-l"}},
		{"/bin/bash", false, "echo hi; exit 3", []string{"/bin/bash", "-c", "echo hi; exit 3"}},
		{"", false, "true", []string{"/bin/sh", "-c", "true"}},
		{"", true, "", []string{"/bin/sh", "-l"}},
	} {
		if got := sessionArgv(tc.shell, tc.shellRq, tc.cmd); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("sessionArgv(%q, %v, %q) = %q, want %q", tc.shell, tc.shellRq, tc.cmd, got, tc.want)
		}
	}
}

func TestRoute(t *testing.T) {
	s := &Server{opts: Options{CommandLogin: "ds01"}}
	for login, want := range map[string]target{
		"my-thesis":        {"my-thesis", session.Default},
		"my-thesis+gpus=2": {"my-thesis", session.Want{GPUs: 2}},
		"my-thesis+cpu":    {"my-thesis", session.Want{GPUs: 0}},
		"my-thesis+gpus=0": {"my-thesis", session.Want{GPUs: 0}},
	} {
		if got, err := s.route(login); err != nil || got != want {
			t.Errorf("route(%s) = %+v, %v; want %+v", login, got, err, want)
		}
	}
	if _, err := s.route("ds01"); !errors.Is(err, errCommandLogin) {
		t.Errorf("route(ds01) = %v, want the command login error", err)
	}
	for _, bad := range []string{"../x", "A", "", "x;id", "x+gpus=-1", "x+gpus=two", "x+gpus=1000", "x+root", "+cpu"} {
		if _, err := s.route(bad); !errors.Is(err, session.ErrInvalidName) {
			t.Errorf("route(%q) = %v, want an invalid name error", bad, err)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:2222": "127.0.0.1 2222", "[::1]:22": "::1 22"} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignalNamesRoundTrip(t *testing.T) {
	for name, sig := range signalByName {
		if signalName[sig] != name {
			t.Errorf("signal %s does not map back", name)
		}
	}
}

func TestCRLFWriter(t *testing.T) {
	var b strings.Builder
	n, err := crlfWriter{&b}.Write([]byte("ds01: a\nds01: b\n"))
	if err != nil || n != 16 || b.String() != "ds01: a\r\nds01: b\r\n" {
		t.Errorf("got %q, %d, %v", b.String(), n, err)
	}
}

func TestForwardTarget(t *testing.T) {
	allow := []string{"licenses.example.org:27000", "10.1.2.3"}
	for _, tc := range []struct {
		host string
		port uint32
		want string
	}{
		{"127.0.0.1", 8888, "127.0.0.1:8888"},
		{"localhost", 8888, "127.0.0.1:8888"},
		{"proj", 6006, "127.0.0.1:6006"},
		{"::1", 22, "[::1]:22"},
		{"licenses.example.org", 27000, "licenses.example.org:27000"},
		{"10.1.2.3", 443, "10.1.2.3:443"},
		{"licenses.example.org", 27001, ""},
		{"172.17.0.1", 22, ""},
		{"10.0.0.1", 80, ""},
		{"127.0.0.1", 0, ""},
		{"other-proj", 80, ""},
	} {
		got, ok := forwardTarget(tc.host, tc.port, "proj", allow)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("forwardTarget(%s, %d) = %q %v, want %q", tc.host, tc.port, got, ok, tc.want)
		}
	}
}
