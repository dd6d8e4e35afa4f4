package image

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// hostileSpecs must be refused by both parsers: each would change the
// Dockerfile or the installer's behaviour if it got through.
var hostileSpecs = []string{
	"",
	"x; rm -rf /",
	"x;",
	"x\nRUN id",
	"x\rRUN id",
	"--index-url=http://evil",
	"-r",
	"-e",
	"-",
	"x$(id)",
	"x`id`",
	"x' 'y",
	"x'",
	`x"`,
	`x\`,
	"numpy @ https://x",
	"numpy@https://x",
	"https://evil/x.whl",
	"numpy; python_version<'3'",
	"numpy;python_version<'3'",
	"ÄÖ",
	"numpÿ",
	"a\tb",
	"a b",
	" numpy",
	"numpy ",
	"x|sh",
	"x&&id",
	"x>/etc/passwd",
	"x\x00",
	"x\x1b[2J",
	"x\u202e",
	"x#comment",
	"x{a}",
	"x(1)",
	"x?",
	"x%",
	strings.Repeat("a", 201),
}

func TestParsePipValid(t *testing.T) {
	tests := []struct{ spec, name string }{
		{"numpy", "numpy"},
		{"NumPy", "numpy"},
		{"RUN", "run"},
		{"scikit_learn", "scikit-learn"},
		{"Scikit.-_Learn", "scikit-learn"},
		{"zope.interface", "zope-interface"},
		{"a", "a"},
		{"torch==2.3.0", "torch"},
		{"transformers[torch,sentencepiece]>=4.40,<5", "transformers"},
		{"transformers[torch]==4.40.0", "transformers"},
		{"numpy>=1.24,<2", "numpy"},
		{"pkg~=1.4.2", "pkg"},
		{"x===1.0", "x"},
		{"x!=1.*", "x"},
		{"x==1.2.*", "x"},
		{"x>1", "x"},
		{"x<=2.0rc1", "x"},
		{"torch==2.3.0+cu121", "torch"},
		{"x==1!2.0", "x"},
		{"x==1.0.post1-dev_2", "x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 200)},
	}
	for _, tt := range tests {
		p, err := ParsePip(tt.spec)
		if err != nil {
			t.Errorf("ParsePip(%q): %v", tt.spec, err)
			continue
		}
		if p.Name != tt.name || p.Spec != tt.spec {
			t.Errorf("ParsePip(%q) = %+v, want Name %q", tt.spec, p, tt.name)
		}
	}
}

func TestParsePipInvalid(t *testing.T) {
	bad := append([]string{
		"x==", "x==1,", "x,", "x[]", "x[a,]", "x[a b]", "x[a", "x]", "x[-a]",
		"x=1", "x=>1", "x>=1.*", "x==*", "x==.1", "x.", "x-", "_x", ".x",
		"x/y", "x:y", "x==1:2", "x==1/2", "x~1", "x>=1 ,<2", "x~=", "x[a]b",
	}, hostileSpecs...)
	for _, spec := range bad {
		p, err := ParsePip(spec)
		if err == nil {
			t.Errorf("ParsePip(%q) = %+v, want error", spec, p)
			continue
		}
		if !strings.Contains(err.Error(), "use NAME, NAME[extra], NAME==1.2 or NAME>=1,<2") {
			t.Errorf("ParsePip(%q) error %q does not say what a valid spec looks like", spec, err)
		}
	}
}

func TestParseAptValid(t *testing.T) {
	tests := []struct{ spec, name string }{
		{"jq", "jq"},
		{"libssl-dev", "libssl-dev"},
		{"g++", "g++"},
		{"python3.11", "python3.11"},
		{"libc6:amd64", "libc6:amd64"},
		{"libc6:i386", "libc6:i386"},
		{"git=1:2.39.5-0+deb12u1", "git"},
		{"libssl-dev=3.0.11-1~deb12u2", "libssl-dev"},
		{"gcc:amd64=4:12.2.0-3", "gcc:amd64"},
		{"git/bookworm-backports", "git"},
		{"libc6:arm64/bookworm", "libc6:arm64"},
		{"x11-apps", "x11-apps"},
		{"0ad", "0ad"},
	}
	for _, tt := range tests {
		p, err := ParseApt(tt.spec)
		if err != nil {
			t.Errorf("ParseApt(%q): %v", tt.spec, err)
			continue
		}
		if p.Name != tt.name || p.Spec != tt.spec {
			t.Errorf("ParseApt(%q) = %+v, want Name %q", tt.spec, p, tt.name)
		}
	}
}

func TestParseAptInvalid(t *testing.T) {
	bad := append([]string{
		"j", "JQ", "Jq", "+jq", ".jq", "jq_x", "jq:", "jq:AMD64", "jq:a:b",
		"jq=", "jq=abc", "jq=a:1", "jq=1:", "jq=:1", "jq=1:a", "jq=1 2", "jq=1_2",
		"jq/", "jq/Bookworm", "jq/a/b", "jq/a=1", "jq=1/a", "jq[x]", "jq>=1", "RUN",
	}, hostileSpecs...)
	for _, spec := range bad {
		p, err := ParseApt(spec)
		if err == nil {
			t.Errorf("ParseApt(%q) = %+v, want error", spec, p)
			continue
		}
		if !strings.Contains(err.Error(), "use NAME, NAME=VERSION or NAME/RELEASE") {
			t.Errorf("ParseApt(%q) error %q does not say what a valid spec looks like", spec, err)
		}
	}
}

// Error messages go to a student's terminal: control characters must be
// escaped and a huge argument must not be echoed back whole.
func TestParseErrorQuotesSafely(t *testing.T) {
	for _, spec := range []string{"x\x1b[2J", "x\nRUN id", "x\u202e", strings.Repeat("a", 5000)} {
		for _, k := range []Kind{Pip, System} {
			_, err := Parse(k, spec)
			if err == nil {
				t.Fatalf("Parse(%v, %q) accepted", k, spec)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\x1b\n\u202e") || len(msg) > 200 {
				t.Errorf("Parse(%v, %q) error is unsafe to print: %q", k, spec, msg)
			}
		}
	}
	_, err := ParsePip("x;")
	if want := `invalid pip package "x;": use NAME, NAME[extra], NAME==1.2 or NAME>=1,<2`; err == nil || err.Error() != want {
		t.Errorf("ParsePip(x;) error = %v, want %s", err, want)
	}
	_, err = ParseApt("x;")
	if want := `invalid apt package "x;": use NAME, NAME=VERSION or NAME/RELEASE`; err == nil || err.Error() != want {
		t.Errorf("ParseApt(x;) error = %v, want %s", err, want)
	}
}

func TestKind(t *testing.T) {
	if Pip.String() != "pip" || System.String() != "apt" {
		t.Errorf("Kind strings = %q, %q", Pip, System)
	}
	if _, err := Parse(Kind(7), "numpy"); err == nil {
		t.Error("Parse with an unknown kind accepted")
	}
	if p, err := Parse(Pip, "NumPy"); err != nil || p.Name != "numpy" {
		t.Errorf("Parse(Pip, NumPy) = %+v, %v", p, err)
	}
	if p, err := Parse(System, "jq"); err != nil || p.Name != "jq" {
		t.Errorf("Parse(System, jq) = %+v, %v", p, err)
	}
}

func specsOf(pkgs []Package) []string {
	out := []string{}
	for _, p := range pkgs {
		out = append(out, p.Spec)
	}
	return out
}

func TestParseList(t *testing.T) {
	tests := []struct {
		k     Kind
		value string
		want  []string // nil: error
	}{
		{Pip, "numpy pandas>=2", []string{"numpy", "pandas>=2"}},
		{Pip, "  numpy\t transformers[torch,sentencepiece]>=4.40,<5 ", []string{"numpy", "transformers[torch,sentencepiece]>=4.40,<5"}},
		{Pip, "RUN", []string{"RUN"}},
		{System, "jq curl libc6:amd64", []string{"jq", "curl", "libc6:amd64"}},
		{Pip, "", nil},
		{Pip, " \t\n", nil},
		{Pip, "numpy x;y", nil},
		{Pip, "numpy --index-url=http://evil", nil},
		{Pip, "numpy -r req.txt", nil},
		{Pip, "numpy 'pandas'", nil},
		{Pip, "numpy @ https://x", nil},
		{System, "jq; curl", nil},
		{System, "jq $(id)", nil},
		{Pip, strings.Repeat("a ", 1001), nil},
	}
	for _, tt := range tests {
		got, err := ParseList(tt.k, tt.value)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParseList(%v, %q) = %v, want error", tt.k, tt.value, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(specsOf(got), tt.want) {
			t.Errorf("ParseList(%v, %q) = %q, %v; want %q", tt.k, tt.value, specsOf(got), err, tt.want)
		}
	}
}

func TestParseRequirements(t *testing.T) {
	data := "\ufeff# comment\r\n\r\nnumpy>=1.24  # pinned later\r\n  pandas\t#x\nscikit_learn==1.5.0\n\n   # indented comment\ntransformers[torch]" // no final newline
	got, err := ParseRequirements([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{"numpy", "numpy>=1.24"}, {"pandas", "pandas"},
		{"scikit-learn", "scikit_learn==1.5.0"}, {"transformers", "transformers[torch]"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseRequirements = %+v, want %+v", got, want)
	}
}

func TestParseRequirementsErrors(t *testing.T) {
	tests := []struct{ data, want string }{
		{"", "no packages in requirements"},
		{"# only\n\n  \n", "no packages in requirements"},
		{"numpy\n\n-r other.txt\n", "requirements line 3: "},
		{"-e .\n", "requirements line 1: "},
		{"numpy\n--index-url=http://evil\n", "requirements line 2: "},
		{"--extra-index-url http://evil\n", "requirements line 1: "},
		{"-c constraints.txt\n", "requirements line 1: "},
		{"numpy\npandas\nnumpy; python_version<'3'\n", "requirements line 3: environment markers"},
		{"numpy;python_version<'3'", "requirements line 1: environment markers"},
		{"numpy\nnumpy @ https://x\n", "requirements line 2: invalid pip package"},
		{"numpy >= 1.24\n", "requirements line 1: invalid pip package"},
		{"x#comment\n", "requirements line 1: invalid pip package"},
		{"x$(id)\n", "requirements line 1: invalid pip package"},
		{"numpy==1 \\\n", "requirements line 1: invalid pip package"},
		{"numpy==1 --hash=sha256:00\n", "requirements line 1: invalid pip package"},
		{strings.Repeat("a\n", 1001), "more than 1000"},
		{strings.Repeat("#", 2<<20), "larger than"},
	}
	for _, tt := range tests {
		got, err := ParseRequirements([]byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRequirements(%.40q) = %v, %v; want error containing %q", tt.data, got, err, tt.want)
		}
	}
	if got, err := ParseRequirements([]byte(strings.Repeat("a\n", 1000))); err != nil || len(got) != 1000 {
		t.Errorf("1000 requirements: %d, %v", len(got), err)
	}
}

func mustList(t *testing.T, k Kind, value string) []Package {
	t.Helper()
	pkgs, err := ParseList(k, value)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestMerge(t *testing.T) {
	tests := []struct {
		k              Kind
		cur, add, want string
	}{
		{Pip, "numpy pandas", "numpy==2", "numpy==2 pandas"},
		{Pip, "numpy", "pandas torch", "numpy pandas torch"},
		{Pip, "NumPy pandas", "numpy>=2 Pandas", "numpy>=2 Pandas"},
		{Pip, "scikit_learn", "scikit-learn==1.5", "scikit-learn==1.5"},
		{Pip, "transformers", "transformers[torch]==4.40.0", "transformers[torch]==4.40.0"},
		{Pip, "a", "b==1 c b==2", "a b==2 c"},
		{System, "jq curl", "curl=8.0.0 git", "jq curl=8.0.0 git"},
		{System, "libc6", "libc6:i386", "libc6 libc6:i386"},
	}
	for _, tt := range tests {
		cur := mustList(t, tt.k, tt.cur)
		before := fmt.Sprint(cur)
		got := strings.Join(specsOf(Merge(cur, mustList(t, tt.k, tt.add))), " ")
		if got != tt.want {
			t.Errorf("Merge(%q, %q) = %q, want %q", tt.cur, tt.add, got, tt.want)
		}
		if fmt.Sprint(cur) != before {
			t.Errorf("Merge modified its input %q", tt.cur)
		}
	}
	if got := Merge(nil, nil); len(got) != 0 {
		t.Errorf("Merge(nil, nil) = %v", got)
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		k       Kind
		cur     string
		names   []string
		kept    string
		missing []string
	}{
		{Pip, "numpy pandas torch", []string{"pandas"}, "numpy torch", nil},
		{Pip, "NumPy scikit_learn", []string{"numpy", "Scikit-Learn"}, "", nil},
		{Pip, "numpy==2 pandas", []string{"numpy>=1"}, "pandas", nil},
		{Pip, "numpy", []string{"torch", "numpy", "x;y", "torch"}, "", []string{"torch", "x;y", "torch"}},
		{System, "jq curl=8.0.0 libc6:i386", []string{"curl", "libc6"}, "jq libc6:i386", []string{"libc6"}},
		{System, "jq", []string{"JQ"}, "jq", []string{"JQ"}},
	}
	for _, tt := range tests {
		kept, missing := Remove(tt.k, mustListOrNil(t, tt.k, tt.cur), tt.names)
		if got := strings.Join(specsOf(kept), " "); got != tt.kept || !reflect.DeepEqual(missing, tt.missing) {
			t.Errorf("Remove(%q, %q) = %q, %q; want %q, %q", tt.cur, tt.names, got, missing, tt.kept, tt.missing)
		}
	}
}

func mustListOrNil(t *testing.T, k Kind, value string) []Package {
	if strings.TrimSpace(value) == "" {
		return nil
	}
	return mustList(t, k, value)
}

// specSafe is every byte an accepted spec may hold.
func specSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-[],=<>!~*+:/", c) >= 0) {
			return false
		}
	}
	return true
}

func fuzzSpec(f *testing.F, k Kind, seeds []string) {
	for _, s := range seeds {
		f.Add(s)
	}
	for _, s := range hostileSpecs {
		f.Add(s)
	}
	df := DefaultDockerfile("python:3.12", "alice", "thesis")
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := Parse(k, spec)
		if err != nil {
			return
		}
		if !specSafe(p.Spec) || p.Spec != spec || len(spec) > 200 || strings.HasPrefix(spec, "-") {
			t.Fatalf("accepted unsafe spec %q", spec)
		}
		out, err := WithPackages(df, k, []Package{p})
		if err != nil {
			t.Fatalf("WithPackages(%q): %v", spec, err)
		}
		got, found, err := Packages(out, k)
		if err != nil || !found || len(got) != 1 || got[0] != p {
			t.Fatalf("Packages after WithPackages(%q) = %+v, %v, %v", spec, got, found, err)
		}
	})
}

func FuzzParsePip(f *testing.F) {
	fuzzSpec(f, Pip, []string{"numpy", "NumPy", "scikit_learn", "torch==2.3.0",
		"transformers[torch,sentencepiece]>=4.40,<5", "pkg~=1.4.2", "x===1.0", "x!=1.*", "RUN"})
}

func FuzzParseApt(f *testing.F) {
	fuzzSpec(f, System, []string{"jq", "libssl-dev", "g++", "python3.11", "libc6:amd64",
		"git=1:2.39.5-0+deb12u1", "git/bookworm-backports", "libssl-dev=3.0.11-1~deb12u2"})
}
