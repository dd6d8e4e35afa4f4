package image

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseInstructions(t *testing.T) {
	df := "\ufeff# escape=\\\nFROM --platform=linux/amd64 python:3.12 AS build\n" +
		"RUN echo a \\\n  # a comment inside\n\n  b\n" +
		"COPY --from=\"bu\"ild --chown=1:1 [\"a b\", \"/c\"]\n" +
		"add   x  y\r\n" +
		"ONBUILD ADD --chown=0 http://h/x /x\n" +
		"LABEL a=b \"c d\"=e\n" +
		"RUN [\"sh\", \"-c\", \"x\"] trailing\n" +
		"COPY --from=a -- --b /c\n"
	insts := Readings([]byte(df))[0].Insts
	type got struct {
		Keyword     string
		Flags, Args []string
		JSON        bool
		First, Last int
	}
	var g []got
	for _, in := range insts {
		g = append(g, got{in.Keyword, in.Flags, in.Args, in.JSON, in.First, in.Last})
	}
	want := []got{
		{"FROM", []string{"--platform=linux/amd64"}, []string{"python:3.12", "AS", "build"}, false, 1, 1},
		{"RUN", nil, []string{"echo", "a", "b"}, false, 2, 5},
		{"COPY", []string{"--from=build", "--chown=1:1"}, []string{"a b", "/c"}, true, 6, 6},
		{"ADD", nil, []string{"x", "y"}, false, 7, 7},
		{"ONBUILD", nil, []string{"ADD", "--chown=0", "http://h/x", "/x"}, false, 8, 8},
		{"LABEL", nil, []string{"a=b", `"c`, `d"=e`}, false, 9, 9},
		{"RUN", nil, []string{"sh", "-c", "x"}, true, 10, 10},
		{"COPY", []string{"--from=a"}, []string{"--b", "/c"}, false, 11, 11},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("parsed:\n%+v\nwant:\n%+v", g, want)
	}
	tr := insts[4].Trigger
	if tr == nil || tr.Keyword != "ADD" || !reflect.DeepEqual(tr.Flags, []string{"--chown=0"}) || !reflect.DeepEqual(tr.Args, []string{"http://h/x", "/x"}) {
		t.Errorf("ONBUILD trigger = %+v", tr)
	}
	if k := labelKeys(&insts[5], '\\'); !reflect.DeepEqual(k, []string{"a", `"c d"`}) {
		t.Errorf("label keys = %q", k)
	}
}

// The escape directive: a file that may set it is read both ways.
func TestReadingsEscape(t *testing.T) {
	df := []byte("# escape=`\nRUN a `\n b\nFROM x\n")
	rs := Readings(df)
	if len(rs) != 2 || rs[1].Escape != '`' {
		t.Fatalf("readings = %+v", rs)
	}
	if n := len(rs[1].Insts); n != 2 || rs[1].Insts[0].Last != 2 {
		t.Errorf("with escape=`: %+v", rs[1].Insts)
	}
	if len(Readings([]byte("FROM x\n# escape=`\n"))) != 1 {
		t.Error("a directive after an instruction counted")
	}
}

func TestBuilderFlags(t *testing.T) {
	tests := []struct {
		line, rest string
		flags      []string
	}{
		{"--a=1 --b x y", "x y", []string{"--a=1", "--b"}},
		{`--from="a b" c`, "c", []string{"--from=a b"}},
		{`--from=a\"b c`, "c", []string{`--from=a"b`}},
		{`--from='' c`, "c", []string{"--from="}},
		{"-- --x", " --x", nil},
		{"--x", "", []string{"--x"}},
		{"x --y", "x --y", nil},
	}
	for _, tt := range tests {
		rest, flags := builderFlags(tt.line)
		if rest != tt.rest || !reflect.DeepEqual(flags, tt.flags) {
			t.Errorf("builderFlags(%q) = %q, %q; want %q, %q", tt.line, rest, flags, tt.rest, tt.flags)
		}
	}
}

func TestShellWord(t *testing.T) {
	vars := map[string]string{"A": "x", "EMPTY": ""}
	tests := []struct {
		in, want string
		err      bool
	}{
		{`"http://h"`, "http://h", false},
		{`h\ttp://h`, "http://h", false},
		{`'$A'`, "$A", false},
		{`"$A"y`, "xy", false},
		{`${A}`, "x", false},
		{`${EMPTY:-d}`, "d", false},
		{`${A:+"p q"}`, "p q", false},
		{`${NOPE}`, "", false},
		{`a$`, "a$", false},
		{`"a\"b"`, `a"b`, false},
		{`"a\b"`, `a\b`, false},
		{`${A#x}`, "", true},
		{`'open`, "", true},
		{`${A:-x`, "", true},
	}
	for _, tt := range tests {
		got, err := shellWord(tt.in, '\\', vars)
		if (err != nil) != tt.err || !tt.err && got != tt.want {
			t.Errorf("shellWord(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
	if _, err := shellWord("$A", '\\', nil); err == nil {
		t.Error("a variable without vars was not refused")
	}
}

// FuzzDockerfile feeds the parser arbitrary files: it must not panic, every
// instruction must lie within the file, and what the context reads must
// stay inside the workspace.
func FuzzDockerfile(f *testing.F) {
	for _, s := range []string{
		"FROM x\nRUN a \\\n b\n", "# escape=`\nFROM x `\n AS y\n", "ADD [\"http://x\", \"/y\"]\n",
		"ONBUILD ONBUILD COPY --from=\"a\" . .\n", "LABEL \"a b\"=c d=e\\\n f=g\n", "COPY ../../etc/passwd /x\n",
		"FROM ${A:-b}\nARG A=\"x y\"\n", "RUN --mount=type=bind,from=x,target=/m true\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, df []byte) {
		lines := splitLines(df)
		if strings.Join(lines, "") != string(df) {
			t.Fatal("splitLines lost bytes")
		}
		for _, r := range Readings(df) {
			for _, in := range r.Insts {
				if in.First < 0 || in.Last < in.First || in.Last >= len(lines) {
					t.Fatalf("instruction %+v outside the file's %d lines", in, len(lines))
				}
				if in.Keyword == "" || strings.ToUpper(in.Keyword) != in.Keyword {
					t.Fatalf("keyword %q", in.Keyword)
				}
				labelKeys(&in, r.Escape)
			}
		}
		for _, s := range Sources(df) {
			if s == ".." || strings.HasPrefix(s, "../") || strings.HasPrefix(s, "/") {
				t.Fatalf("source %q leaves the workspace", s)
			}
		}
		_, _ = Check(df, RefPolicy{UID: 1})
		if utf8.Valid(df) {
			_, _ = shellWord(string(df), '\\', map[string]string{})
		}
	})
}
