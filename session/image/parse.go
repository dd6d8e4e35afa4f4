package image

import (
	"encoding/json"
	"regexp"
	"strings"
	"unicode"
)

// This file is the one reader of Dockerfiles: the package blocks, the build
// context and every security check go through it. It reads a file the way
// Docker's own parser does (moby/buildkit frontend/dockerfile/parser, which
// the classic builder uses too), because a check that reads a line
// differently from the engine can be walked around: a continuation, a
// comment inside one, the escape directive, quoted flags.

// Instruction is one Dockerfile instruction as Docker's parser splits it.
type Instruction struct {
	// Keyword is the instruction in upper case: FROM, RUN, COPY, ...
	Keyword string
	// Flags are the leading --name=value words, with quotes and escapes
	// removed as Docker's flag reader removes them.
	Flags []string
	// Rest is the text after the keyword and the flags, trimmed.
	Rest string
	// Args are the JSON form's strings when JSON is set, else Rest split
	// at whitespace with quotes left on (Docker expands them later).
	Args []string
	JSON bool
	// First and Last are the physical lines (0-based) it spans.
	First, Last int
	// Trigger is the instruction an ONBUILD registers.
	Trigger *Instruction
}

// Line is the 1-based number of the instruction's first line.
func (in *Instruction) Line() int { return in.First + 1 }

// Flag returns the value of the last --name=value flag, and whether it
// was given at all.
func (in *Instruction) Flag(name string) (string, bool) {
	val, found := "", false
	for _, f := range in.Flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if strings.EqualFold(k, name) {
			val, found = v, true
		}
	}
	return val, found
}

// Parsed is a Dockerfile as read with one escape character.
type Parsed struct {
	Escape byte
	Insts  []Instruction
}

// Readings parses df once for each escape character Docker might use for
// it. Docker takes "# escape=`" only from the leading comments, and
// engine versions disagree on which comments end that search, so a file
// that may set it is read both ways and a check must pass both readings.
func Readings(df []byte) []Parsed {
	lines := splitLines(df)
	out := []Parsed{parseLines(lines, '\\')}
	if escapeOf(lines) == '`' {
		out = append(out, parseLines(lines, '`'))
	}
	return out
}

func parseLines(lines []string, esc byte) Parsed {
	joined, _ := joinLines(lines, 0, len(lines), esc)
	p := Parsed{Escape: esc, Insts: make([]Instruction, 0, len(joined))}
	for _, j := range joined {
		if in, ok := parseInstruction(j.text, esc); ok {
			in.First, in.Last = j.first, j.last
			p.Insts = append(p.Insts, in)
		}
	}
	return p
}

// dockerSpace is the whitespace Docker splits the keyword and word lists
// at; unicode spaces beyond these stay inside a word.
var dockerSpace = regexp.MustCompile(`[\t\v\f\r ]+`)

// parseInstruction splits one logical line as Docker's splitCommand and
// its per-instruction argument readers do.
func parseInstruction(line string, esc byte) (Instruction, bool) {
	parts := dockerSpace.Split(strings.TrimSpace(line), 2)
	if parts[0] == "" {
		return Instruction{}, false
	}
	in := Instruction{Keyword: strings.ToUpper(parts[0])}
	if len(parts) == 2 {
		in.Rest, in.Flags = builderFlags(parts[1])
		in.Rest = strings.TrimSpace(in.Rest)
	}
	switch in.Keyword {
	case "ADD", "COPY", "VOLUME", "RUN", "CMD", "ENTRYPOINT", "SHELL":
		if args, ok := jsonArgs(in.Rest); ok {
			in.Args, in.JSON = args, true
			return in, true
		}
	case "ONBUILD":
		if t, ok := parseInstruction(in.Rest, esc); ok {
			in.Trigger = &t
		}
	}
	in.Args = whitespaceWords(in.Rest)
	return in, true
}

// jsonArgs reads the JSON (exec) form. Docker decodes the first JSON value
// and ignores what follows it.
func jsonArgs(rest string) ([]string, bool) {
	rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
	if !strings.HasPrefix(rest, "[") {
		return nil, false
	}
	var vals []any
	if err := json.NewDecoder(strings.NewReader(rest)).Decode(&vals); err != nil {
		return nil, false
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return nil, false // Docker refuses the file
		}
		out = append(out, s)
	}
	return out, true
}

func whitespaceWords(rest string) []string {
	if rest == "" {
		return nil
	}
	return dockerSpace.Split(rest, -1)
}

// builderFlags takes the leading --flags off line, as Docker's
// extractBuilderFlags does: byte by byte, quotes and '\' removed (always
// '\', whatever the escape directive says), "--" ending the flags.
func builderFlags(line string) (rest string, flags []string) {
	const (
		inSpaces = iota
		inWord
		inQuote
	)
	phase, word, blankOK := inSpaces, "", false
	var quote byte
	for pos := 0; pos <= len(line); pos++ {
		var ch byte
		if pos != len(line) {
			ch = line[pos]
		}
		if phase == inSpaces {
			if pos == len(line) {
				break
			}
			if unicode.IsSpace(rune(ch)) {
				continue
			}
			if ch != '-' || pos+1 == len(line) || line[pos+1] != '-' {
				return line[pos:], flags
			}
			phase = inWord
		}
		if pos == len(line) {
			if word != "--" && (blankOK || word != "") {
				flags = append(flags, word)
			}
			break
		}
		if phase == inWord {
			if unicode.IsSpace(rune(ch)) {
				phase = inSpaces
				if word == "--" {
					return line[pos:], flags
				}
				if blankOK || word != "" {
					flags = append(flags, word)
				}
				word, blankOK = "", false
				continue
			}
			if ch == '\'' || ch == '"' {
				quote, blankOK, phase = ch, true, inQuote
				continue
			}
			if ch == '\\' {
				if pos+1 == len(line) {
					continue
				}
				pos++
				ch = line[pos]
			}
			word += string(ch)
			continue
		}
		// inQuote
		if ch == quote {
			phase = inWord
			continue
		}
		if ch == '\\' {
			if pos+1 == len(line) {
				phase = inWord
				continue
			}
			pos++
			ch = line[pos]
		}
		word += string(ch)
	}
	return "", flags
}

// quotedWords splits rest at whitespace outside quotes, keeping quotes and
// escapes in the words, as Docker's parseWords does for LABEL, ENV and ARG.
func quotedWords(rest string, esc byte) []string {
	var words []string
	var word strings.Builder
	inWord, blankOK := false, false
	var quote rune
	e := rune(esc)
	rs := []rune(rest)
	flush := func() {
		if blankOK || word.Len() > 0 {
			words = append(words, word.String())
		}
		word.Reset()
		inWord, blankOK = false, false
	}
	for i := 0; i < len(rs); i++ {
		ch := rs[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			} else if ch == e && quote != '\'' {
				if i+1 == len(rs) {
					quote = 0
					continue
				}
				word.WriteRune(ch)
				i++
				ch = rs[i]
			}
			word.WriteRune(ch)
		case unicode.IsSpace(ch):
			if inWord {
				flush()
			}
		default:
			inWord = true
			if ch == '\'' || ch == '"' {
				quote, blankOK = ch, true
			}
			if ch == e {
				if i+1 == len(rs) {
					continue
				}
				word.WriteRune(ch)
				i++
				ch = rs[i]
			}
			word.WriteRune(ch)
		}
	}
	if inWord || quote != 0 {
		flush()
	}
	return words
}

// labelKeys returns the keys a LABEL instruction sets, as written.
func labelKeys(in *Instruction, esc byte) []string {
	words := quotedWords(in.Rest, esc)
	if len(words) == 0 {
		return nil
	}
	if !strings.Contains(words[0], "=") {
		// The old form, LABEL key value: the key is the first word.
		return []string{dockerSpace.Split(in.Rest, 2)[0]}
	}
	keys := make([]string, 0, len(words))
	for _, w := range words {
		k, _, _ := strings.Cut(w, "=")
		keys = append(keys, k)
	}
	return keys
}

// joinedLine is one instruction with its continuation lines joined.
type joinedLine struct {
	text        string
	first, last int // physical line indexes
}

// splitLines cuts df into lines that keep their line endings, so joining
// them gives back df byte for byte.
func splitLines(df []byte) []string {
	var out []string
	s := string(df)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// joinLines joins continued lines of lines[from:to] exactly as Docker's
// parser does, since a different reading could hide an instruction: a
// line whose end (before spaces and tabs) is esc continues, the next line
// is appended without its indentation trimmed and with no space added, and
// comment and blank lines are skipped even inside a continuation. open
// reports a continuation still pending at to; that instruction is returned
// too.
func joinLines(lines []string, from, to int, esc byte) (out []joinedLine, open bool) {
	var cur strings.Builder
	start := -1
	for i := from; i < to; i++ {
		raw := physical(lines, i)
		left := strings.TrimLeftFunc(raw, unicode.IsSpace)
		if left == "" || left[0] == '#' {
			continue
		}
		if start < 0 {
			start, raw = i, left
		}
		text, cont := cutContinuation(raw, esc)
		cur.WriteString(text)
		if !cont {
			out = append(out, joinedLine{cur.String(), start, i})
			cur.Reset()
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, joinedLine{cur.String(), start, to - 1})
	}
	return out, start >= 0
}

// physical returns line i as Docker's line reader hands it over: without
// its line ending (every trailing \r and \n) and, on the first line,
// without a byte order mark.
func physical(lines []string, i int) string {
	s := strings.TrimRight(lines[i], "\r\n")
	if i == 0 {
		s = strings.TrimPrefix(s, "\ufeff")
	}
	return s
}

// cutContinuation removes a final esc followed only by spaces and tabs.
func cutContinuation(s string, esc byte) (string, bool) {
	t := strings.TrimRight(s, " \t")
	if t != "" && t[len(t)-1] == esc {
		return t[:len(t)-1], true
	}
	return s, false
}

// escapeOf returns the escape character a "# escape=" parser directive
// sets. It looks through all leading comments, not only directives, so it
// errs towards seeing a directive Docker would ignore.
func escapeOf(lines []string) byte {
	for i := range lines {
		t := strings.TrimSpace(physical(lines, i))
		if t != "" && t[0] != '#' {
			break
		}
		key, val, ok := strings.Cut(strings.TrimPrefix(t, "#"), "=")
		if ok && strings.EqualFold(strings.TrimSpace(key), "escape") && strings.HasPrefix(strings.TrimSpace(val), "`") {
			return '`'
		}
	}
	return '\\'
}
