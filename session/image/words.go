package image

import (
	"errors"
	"strings"
	"unicode"
)

// errVariable is a word whose value depends on a variable the check
// cannot know, or on a substitution form it does not follow.
var errVariable = errors.New("uses a variable the gateway cannot check")

// shellWord gives a word of an instruction the value the builder uses:
// Docker passes the arguments of FROM, COPY, ADD, LABEL and ARG through its
// shell lexer (moby/buildkit frontend/dockerfile/shell), which removes
// quotes and escapes and expands variables. So `ADD "http://x" /` fetches
// http://x. Variables come from vars: $NAME, ${NAME}, ${NAME:-word} and
// ${NAME:+word}, unset ones empty. With vars nil, or for any other
// substitution, the word is errVariable: a check cannot know its value.
func shellWord(word string, esc byte, vars map[string]string) (string, error) {
	l := &lexer{rs: []rune(word), esc: rune(esc), vars: vars}
	s, err := l.until(-1)
	if err != nil {
		return "", err
	}
	return s, nil
}

type lexer struct {
	rs   []rune
	pos  int
	esc  rune
	vars map[string]string
}

func (l *lexer) peek() rune {
	if l.pos >= len(l.rs) {
		return -1
	}
	return l.rs[l.pos]
}

func (l *lexer) next() rune {
	r := l.peek()
	if r >= 0 {
		l.pos++
	}
	return r
}

// until reads up to stop (or the end when stop is -1).
func (l *lexer) until(stop rune) (string, error) {
	var b strings.Builder
	for l.peek() >= 0 {
		ch := l.peek()
		if stop >= 0 && ch == stop {
			l.next()
			return b.String(), nil
		}
		switch ch {
		case '\'':
			s, err := l.singleQuoted()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		case '"':
			s, err := l.doubleQuoted()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		case '$':
			s, err := l.dollar()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		default:
			l.next()
			if ch == l.esc {
				ch = l.next()
				if ch < 0 {
					return b.String(), nil
				}
			}
			b.WriteRune(ch)
		}
	}
	if stop >= 0 {
		return "", errors.New("missing '}'")
	}
	return b.String(), nil
}

func (l *lexer) singleQuoted() (string, error) {
	l.next()
	var b strings.Builder
	for {
		switch ch := l.next(); ch {
		case -1:
			return "", errors.New("unmatched single quote")
		case '\'':
			return b.String(), nil
		default:
			b.WriteRune(ch)
		}
	}
}

func (l *lexer) doubleQuoted() (string, error) {
	l.next()
	var b strings.Builder
	for {
		switch l.peek() {
		case -1:
			return "", errors.New("unmatched double quote")
		case '"':
			l.next()
			return b.String(), nil
		case '$':
			s, err := l.dollar()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			continue
		}
		ch := l.next()
		if ch == l.esc {
			switch l.peek() {
			case -1:
				continue
			case '"', '$', l.esc:
				ch = l.next()
			}
		}
		b.WriteRune(ch)
	}
}

func (l *lexer) dollar() (string, error) {
	l.next()
	if l.peek() != '{' {
		name := l.name()
		if name == "" {
			return "$", nil
		}
		return l.lookup(name)
	}
	l.next()
	name := l.name()
	if name == "" {
		return "", errVariable
	}
	switch l.next() {
	case '}':
		return l.lookup(name)
	case ':':
	default:
		return "", errVariable
	}
	mod := l.next()
	if mod != '-' && mod != '+' {
		return "", errVariable
	}
	word, err := l.until('}')
	if err != nil {
		return "", err
	}
	val, err := l.lookup(name)
	if err != nil {
		return "", err
	}
	if mod == '-' && val == "" || mod == '+' && val != "" {
		return word, nil
	}
	return val, nil
}

// name reads a variable name; a digit or a special parameter ($@, $1)
// makes a name of its own, as in the shell.
func (l *lexer) name() string {
	var b strings.Builder
	for ch := l.peek(); ch >= 0; ch = l.peek() {
		if b.Len() == 0 && unicode.IsDigit(ch) {
			for unicode.IsDigit(l.peek()) {
				b.WriteRune(l.next())
			}
			return b.String()
		}
		if b.Len() == 0 && strings.ContainsRune("@*#?-$!0", ch) {
			return string(l.next())
		}
		if !unicode.IsLetter(ch) && !unicode.IsNumber(ch) && ch != '_' {
			break
		}
		b.WriteRune(l.next())
	}
	return b.String()
}

func (l *lexer) lookup(name string) (string, error) {
	if l.vars == nil {
		return "", errVariable
	}
	return l.vars[name], nil
}
