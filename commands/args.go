package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// flagKind says how a flag takes its value.
type flagKind int

const (
	boolFlag  flagKind = iota
	valueFlag          // --base IMAGE, --base=IMAGE
	// listFlag takes every following word up to the next flag, because
	// ssh joins the remote command's words with spaces and the user's
	// quotes are gone by then: --add "numpy pandas" arrives as
	// --add numpy pandas.
	listFlag
)

type flagSpec struct {
	name  string // "--add"
	short string // "-r", or ""
	kind  flagKind
	arg   string // the value's name in help
	help  string
	// admin flags are for admins only: refused to others, and not in
	// their help.
	admin bool
}

// command is one built-in command.
type command struct {
	name    string
	aliases []string
	args    string // positional arguments, for help: "<project>"
	// minArgs and maxArgs bound the positional arguments.
	minArgs, maxArgs int
	summary          string
	flags            []flagSpec
	// admin commands are for admins only (Env.Admin): refused to others
	// with exit 1, and listed in help only for admins.
	admin bool
	run   func(ctx context.Context, env *Env, p *parsed) error
}

// parsed is a command line after flag parsing.
type parsed struct {
	words []string // as given, for the record
	args  []string
	vals  map[string][]string // list and value flags, by long name
	bools map[string]bool
	help  bool
}

func (p *parsed) has(name string) bool { return p.bools[name] || p.vals[name] != nil }

// value is a value flag's last value.
func (p *parsed) value(name string) string {
	v := p.vals[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// list is a list flag's words, each split further on whitespace.
func (p *parsed) list(name string) []string {
	var out []string
	for _, v := range p.vals[name] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

var formatFlag = flagSpec{name: "--format", kind: valueFlag, arg: "table|json", help: "output format"}

func (c *command) flag(word string) (*flagSpec, string, bool) {
	name, val, hasVal := strings.Cut(word, "=")
	for i := range c.flags {
		f := &c.flags[i]
		if name == f.name || (f.short != "" && name == f.short) {
			return f, val, hasVal
		}
	}
	return nil, "", false
}

func (c *command) parse(words []string) (*parsed, error) {
	p := &parsed{words: words, vals: map[string][]string{}, bools: map[string]bool{}}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "--help" || w == "-h" {
			p.help = true
			return p, nil
		}
		if !strings.HasPrefix(w, "-") || w == "-" {
			p.args = append(p.args, w)
			continue
		}
		f, val, hasVal := c.flag(w)
		if f == nil {
			return nil, usagef("unknown option %q", w)
		}
		switch f.kind {
		case boolFlag:
			if hasVal {
				return nil, usagef("%s takes no value", f.name)
			}
			p.bools[f.name] = true
		case valueFlag:
			if !hasVal {
				if i+1 >= len(words) {
					return nil, usagef("%s needs a value (%s)", f.name, f.arg)
				}
				i++
				val = words[i]
			}
			p.vals[f.name] = append(p.vals[f.name], val)
		case listFlag:
			var vs []string
			if hasVal {
				vs = append(vs, val)
			}
			for i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
				i++
				vs = append(vs, words[i])
			}
			if len(vs) == 0 {
				return nil, usagef("%s needs at least one %s", f.name, f.arg)
			}
			p.vals[f.name] = append(p.vals[f.name], vs...)
		}
	}
	if len(p.args) < c.minArgs {
		return nil, usagef("missing %s", c.args)
	}
	if len(p.args) > c.maxArgs {
		return nil, usagef("unexpected argument %q", p.args[c.maxArgs])
	}
	if f := p.value("--format"); f != "" && f != "json" && f != "table" {
		return nil, usagef("--format: want table or json, got %q", f)
	}
	return p, nil
}

func (c *command) synopsis() string {
	s := c.name
	if c.args != "" {
		s += " " + c.args
	}
	if len(c.flags) > 0 {
		s += " [options]"
	}
	return s
}

// printUsage tells how to call c; admin flags only to admins.
func (c *command) printUsage(w io.Writer, admin bool) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis(), c.summary)
	if len(c.aliases) > 0 {
		fmt.Fprintf(w, "Also: %s\n", strings.Join(c.aliases, ", "))
	}
	if len(c.flags) == 0 {
		return
	}
	fmt.Fprintln(w, "\nOptions:")
	for _, f := range c.flags {
		if f.admin && !admin {
			continue
		}
		n := f.name
		if f.short != "" {
			n = f.short + ", " + n
		}
		if f.arg != "" {
			n += " " + f.arg
		}
		fmt.Fprintf(w, "  %-28s %s\n", n, f.help)
	}
}
