package image

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const me = 23000

func policy(allowed ...string) RefPolicy {
	return RefPolicy{UID: me, AllowedBases: allowed, Lookup: func(host string) ([]netip.Addr, error) {
		switch host {
		case "intranet.example":
			return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
		case "ghcr.io":
			return []netip.Addr{netip.MustParseAddr("140.82.112.33")}, nil
		}
		return nil, errors.New("no such host")
	}}
}

// Every way a Dockerfile can make the engine fetch a URL from the host's
// network, or name another user's image, is refused with its line.
func TestCheckRefuses(t *testing.T) {
	other := "ds01-23001/p"
	id := strings.Repeat("ab", 32)
	tests := []struct{ df, want string }{
		// 1. remote ADD, every form
		{"FROM x\nADD http://127.0.0.1:8080/x /x\n", "line 2: not allowed: ADD \"http://127.0.0.1:8080/x\""},
		{"FROM x\nADD [\"http://127.0.0.1/x\", \"/x\"]\n", "line 2: not allowed: ADD"},
		{"FROM x\nADD --checksum=sha256:00 https://h/x /x\n", "line 2: not allowed: ADD"},
		{"FROM x\nADD --chown=1 a git@github.com:u/r.git /x\n", "line 2: not allowed: ADD \"git@"},
		{"FROM x\nADD \"ht\"tp://h/x /x\n", "line 2: not allowed: ADD \"http://h/x\""},
		{"FROM x\nADD h\\ttp://h/x /x\n", "not allowed: ADD \"http://h/x\""},
		{"FROM x\nADD ftp://h/x /x\n", "not allowed"},
		{"FROM x\nARG U=http://h/x\nADD $U /x\n", "line 3: ADD \"$U\": uses a variable"},
		{"FROM x\nONBUILD ADD http://h/x /x\n", "line 2: ONBUILD: not allowed: ADD"},
		{"FROM x\nRUN true \\\n && true\nADD \\\n  http://h/x \\\n  /x\n", "line 4: not allowed"},
		{"# escape=`\nFROM x\nADD `\n http://h/x /x\n", "not allowed"},
		// 2. other users' images, by name and by ID
		{"FROM " + other + "\n", "line 1: FROM: not allowed: \"ds01-23001/p\" is another user's image"},
		{"FROM docker.io/" + other + ":latest\n", "another user's image"},
		{"FROM index.docker.io/" + other + "\n", "another user's image"},
		{"FROM " + other + "@sha256:" + id + "\n", "another user's image"},
		{"FROM x\nCOPY --from=" + other + " /a /a\n", "line 2: COPY --from: not allowed"},
		{"FROM x\nCOPY --from=\"" + other + "\" /a /a\n", "another user's image"},
		{"FROM x\nRUN --mount=type=bind,from=" + other + ",target=/m true\n", "line 2: RUN --mount: not allowed"},
		{"FROM x\nONBUILD COPY --from=" + other + " /a /a\n", "ONBUILD: COPY --from"},
		{"ARG B=" + other + "\nFROM $B\n", "line 2: FROM: not allowed: \"ds01-23001/p\""},
		{"ARG B=ds01-23001\nARG C=${B}/p\nFROM ${C}\n", "another user's image"},
		{"FROM ${NOPE:-" + other + "}\n", "another user's image"},
		{"FROM \"" + other + "\"\n", "another user's image"},
		{"FROM x\nARG B=" + other + "\nFROM $B\n", "FROM: not allowed: an empty image name"},
		{"FROM cafe1234\n", "looks like an image ID"},
		{"FROM sha256:cafe\n", "looks like an image ID"},
		{"FROM " + id + "\n", "looks like an image ID"},
		{"FROM sha256:" + id + "\n", "looks like an image ID"},
		{"FROM 0\n", "looks like an image ID"},
		{"FROM x\nCOPY --from=cafe /a /a\n", "looks like an image ID"},
		{"FROM x\nCOPY --from=$X /a /a\n", "COPY --from: uses a variable"},
		{"FROM ${A#x}\n", "FROM \"${A#x}\": uses a variable"},
		// 2. registries on the server's own networks
		{"FROM 127.0.0.1:5000/x\n", "on a local address"},
		{"FROM localhost:5000/x\n", "on the server itself"},
		{"FROM localhost/x\n", "on the server itself"},
		{"FROM [::1]:5000/x\n", "on a local address"},
		{"FROM 10.0.0.1/x\n", "on a local address"},
		{"FROM 169.254.169.254/x\n", "on a local address"},
		{"FROM intranet.example/x\n", "resolves to a local address"},
		// 4. the gateway's labels
		{"FROM x\nLABEL ds01.gpu.uuids=GPU-1\n", "line 2: not allowed: LABEL \"ds01.gpu.uuids\""},
		{"FROM x\nLABEL a=b DS01.instance=x\n", "LABEL \"DS01.instance\""},
		{"FROM x\nLABEL \"ds01.uid\"=0\n", "LABEL \"ds01.uid\""},
		{"FROM x\nLABEL ds01.user alice\n", "LABEL \"ds01.user\""},
		{"FROM x\nLABEL ds\\01.user=alice\n", "LABEL \"ds01.user\""},
		{"FROM x\nONBUILD LABEL ds01.gpu.count=1\n", "ONBUILD: not allowed: LABEL"},
		{"FROM x\nLABEL $K=1\n", "LABEL \"$K\": uses a variable"},
		// 5. size
		{"FROM x\n#" + strings.Repeat("x", MaxDockerfile) + "\n", "at most 64 KiB"},
	}
	for _, tt := range tests {
		_, err := Check([]byte(tt.df), policy())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%q) = %v, want an error with %q", tt.df, err, tt.want)
		}
	}
}

func TestCheckAccepts(t *testing.T) {
	own := "ds01-23000/other"
	tests := []struct {
		df    string
		bases []string
		pats  []string
	}{
		{string(DefaultDockerfile("ds01-base:bookworm", "alice", "p")), []string{"ds01-base:bookworm"}, nil},
		{"FROM python:3.12 AS build\nRUN make\nFROM build\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=BUILD /c /c\n", []string{"python:3.12"}, nil},
		{"FROM scratch\nADD local.tar /\nADD [\"a b\", \"/c\"]\nLABEL org.example.ds01=x maintainer=me\n", nil, nil},
		{"ARG CUDA=12.4.1\nFROM nvidia/cuda:${CUDA}-runtime-ubuntu22.04\n", []string{"nvidia/cuda:12.4.1-runtime-ubuntu22.04"}, nil},
		{"FROM " + own + "\n", []string{own}, []string{"python:*"}}, // own images need no pattern
		{"FROM ghcr.io/ds01/base:1\n", []string{"ghcr.io/ds01/base:1"}, nil},
		{"FROM registry.example:5000/x\n", []string{"registry.example:5000/x"}, nil},
		{"FROM 127.0.0.1:5000/x\n", []string{"127.0.0.1:5000/x"}, []string{"127.0.0.1:5000/*"}},
		{"FROM x\nRUN --mount=type=cache,target=/root/.cache pip install x\n", []string{"x"}, nil},
		{"FROM x\nRUN echo http://example.com ds01.x=1\n", []string{"x"}, nil},
		{"FROM cafe1234:1\n", []string{"cafe1234:1"}, nil},
	}
	for _, tt := range tests {
		p := policy(tt.pats...)
		bases, err := Check([]byte(tt.df), p)
		if err != nil || !reflect.DeepEqual(bases, tt.bases) {
			t.Errorf("Check(%q) = %q, %v; want %q", tt.df, bases, err, tt.bases)
		}
	}
}

func TestCheckRefAllowedBases(t *testing.T) {
	p := policy("python:*", "ds01-base:*")
	for _, ref := range []string{"python:3.12", "ds01-base:bookworm", "ds01-23000/mine"} {
		if err := p.CheckRef(ref); err != nil {
			t.Errorf("CheckRef(%q): %v", ref, err)
		}
	}
	for _, ref := range []string{"evil/miner", "ds01-23001/p", "ds01-023000/p", "localhost:5000/python:3", "*"} {
		if err := p.CheckRef(ref); !errors.Is(err, ErrRefused) && !strings.Contains(fmtErr(err), "invalid image") {
			t.Errorf("CheckRef(%q) = %v, want refused", ref, err)
		}
	}
	// A wildcard is not the admin naming a local registry.
	if err := policy("*/*").CheckRef("localhost:5000/x"); err == nil {
		t.Error("a wildcard let a local registry through")
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
