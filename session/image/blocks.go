package image

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A Dockerfile is the user's file: the gateway rewrites only the lines
// between a begin and an end marker and keeps every other byte as it was.

// blockSpan is where one block's marker lines are, as physical line indexes.
type blockSpan struct{ begin, end int }

func blockMarkers(k Kind) (begin, end string, err error) {
	switch k {
	case System:
		return SystemBegin, SystemEnd, nil
	case Pip:
		return PipBegin, PipEnd, nil
	}
	return "", "", fmt.Errorf("unknown package kind %d", int(k))
}

// Packages returns the packages in df's block of kind k, in order.
// found is false when df has no such block.
func Packages(df []byte, k Kind) (pkgs []Package, found bool, err error) {
	lines, blocks, err := loadBlocks(df, k)
	if err != nil {
		return nil, false, err
	}
	b, ok := blocks[k]
	if !ok {
		return nil, false, nil
	}
	pkgs, err = readBlock(lines, b, k)
	if err != nil {
		return nil, true, err
	}
	return pkgs, true, nil
}

// loadBlocks splits df into lines and finds its blocks, refusing files
// whose blocks Docker would not read the way they look.
func loadBlocks(df []byte, k Kind) ([]string, map[Kind]blockSpan, error) {
	if _, _, err := blockMarkers(k); err != nil {
		return nil, nil, err
	}
	lines := splitLines(df)
	if err := checkEscape(lines); err != nil {
		return nil, nil, err
	}
	blocks, err := findBlocks(lines)
	if err != nil {
		return nil, nil, err
	}
	if err := checkNotContinued(lines, blocks); err != nil {
		return nil, nil, err
	}
	return lines, blocks, nil
}

// readBlock parses the RUN lines between b's markers. Anything it does not
// understand is an error rather than skipped: a rewrite would drop it
// silently, and the block must hold nothing but package installs.
func readBlock(lines []string, b blockSpan, k Kind) ([]Package, error) {
	insts, open := joinLines(lines, b.begin+1, b.end, '\\')
	if open {
		return nil, handEdited(b.end-1, k, errors.New("its last line ends with \\"))
	}
	var found []Package
	for _, in := range insts {
		pkgs, err := parseRun(in.text, k)
		if err != nil {
			return nil, handEdited(in.first, k, err)
		}
		found = append(found, pkgs...)
	}
	return Merge(nil, found), nil
}

func handEdited(line int, k Kind, err error) error {
	return fmt.Errorf("Dockerfile line %d: the ds01 %s block was edited by hand and cannot be read (%w); fix it, or delete the lines between its two marker lines", line+1, k, err)
}

// parseRun reads one RUN instruction of a block: shell commands joined by
// && or ;, each an install of kind k or known housekeeping.
func parseRun(text string, k Kind) ([]Package, error) {
	words := shellWords(text)
	if len(words) == 0 || !strings.EqualFold(words[0], "RUN") {
		return nil, errors.New("only RUN lines belong in the block")
	}
	var pkgs []Package
	for _, cmd := range splitCommands(words[1:]) {
		p, err := parseCommand(cmd, k)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p...)
	}
	return pkgs, nil
}

// shellWords splits on whitespace and detaches a trailing ';' ("jq;").
// Quotes are left on: a quoted word holding spaces or ';' then fails
// validation instead of being misread.
func shellWords(text string) []string {
	var out []string
	for _, w := range strings.Fields(text) {
		if t, ok := strings.CutSuffix(w, ";"); ok && t != "" {
			out = append(out, t, ";")
			continue
		}
		out = append(out, w)
	}
	return out
}

// splitCommands cuts words at "&&" and ";", dropping empty commands.
func splitCommands(words []string) [][]string {
	var cmds [][]string
	var cur []string
	for _, w := range words {
		if w == "&&" || w == ";" {
			if len(cur) > 0 {
				cmds = append(cmds, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	if len(cur) > 0 {
		cmds = append(cmds, cur)
	}
	return cmds
}

// parseCommand accepts "[VAR=value ...] INSTALLER [flags] install [flags]
// PKG..." and, in the apt block, apt-get update/clean and the lists cleanup.
func parseCommand(cmd []string, k Kind) ([]Package, error) {
	cmd = dropAssignments(cmd)
	if k == System && slices.Equal(cmd, []string{"rm", "-rf", "/var/lib/apt/lists/*"}) {
		return nil, nil
	}
	args, ok := installerArgs(cmd, k)
	if !ok {
		return nil, fmt.Errorf("unexpected command %s", shortQuote(strings.Join(cmd, " ")))
	}
	sub, rest, err := subcommand(args)
	if err != nil {
		return nil, err
	}
	switch {
	case sub == "install":
		return installWords(rest, k)
	case k == System && (sub == "update" || sub == "clean") && len(rest) == 0:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected command %s", shortQuote(strings.Join(cmd, " ")))
}

// dropAssignments removes leading VAR=value words such as
// DEBIAN_FRONTEND=noninteractive.
func dropAssignments(cmd []string) []string {
	for len(cmd) > 0 && isAssignment(cmd[0]) {
		cmd = cmd[1:]
	}
	return cmd
}

func isAssignment(w string) bool {
	name, val, ok := strings.Cut(w, "=")
	return ok && name != "" && !isDigit(name[0]) &&
		allBytes(name, func(c byte) bool { return isAlnum(c) || c == '_' }) &&
		(val == "" || allBytes(val, func(c byte) bool { return isAlnum(c) || strings.IndexByte("_.-", c) >= 0 }))
}

// installerArgs strips the installer program of kind k from cmd.
func installerArgs(cmd []string, k Kind) ([]string, bool) {
	if len(cmd) == 0 {
		return nil, false
	}
	switch {
	case k == System && (cmd[0] == "apt-get" || cmd[0] == "apt"):
		return cmd[1:], true
	case k == Pip && (cmd[0] == "pip" || cmd[0] == "pip3"):
		return cmd[1:], true
	case k == Pip && len(cmd) >= 3 && isPython(cmd[0]) && cmd[1] == "-m" && cmd[2] == "pip":
		return cmd[3:], true
	}
	return nil, false
}

func isPython(w string) bool {
	v, ok := strings.CutPrefix(w, "python")
	return ok && (v == "" || allBytes(v, func(c byte) bool { return isDigit(c) || c == '.' }))
}

// subcommand returns the first non-flag word and the words after it.
func subcommand(args []string) (sub string, rest []string, err error) {
	for i, w := range args {
		if !strings.HasPrefix(w, "-") {
			return w, args[i+1:], nil
		}
		if !skippableFlag(w) {
			return "", nil, fmt.Errorf("option %s is not supported there", shortQuote(w))
		}
	}
	return "", nil, errors.New("a command lacks its subcommand")
}

// installWords parses the package words after "install".
func installWords(words []string, k Kind) ([]Package, error) {
	var pkgs []Package
	for _, w := range words {
		if strings.HasPrefix(w, "-") {
			if !skippableFlag(w) {
				return nil, fmt.Errorf("option %s is not supported there", shortQuote(w))
			}
			continue
		}
		p, err := Parse(k, stripQuotes(w))
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// boolFlags are installer options that take no separate value. Any other
// option might (-r FILE, -t RELEASE), and its value must not be mistaken
// for a package name, so it is refused. Options written as --opt=value
// carry their value inside and are skipped; the rewrite drops them.
var boolFlags = map[string]bool{
	"-y": true, "--yes": true, "--assume-yes": true, "-q": true, "-qq": true, "-qy": true, "-yq": true,
	"--quiet": true, "--no-install-recommends": true, "--no-install-suggests": true, "--fix-missing": true,
	"--no-cache-dir": true, "-U": true, "--upgrade": true, "--no-deps": true, "--pre": true, "-v": true,
	"--verbose": true, "--prefer-binary": true, "--no-warn-script-location": true,
	"--break-system-packages": true, "--no-build-isolation": true, "--disable-pip-version-check": true,
}

func skippableFlag(w string) bool {
	return boolFlags[w] || strings.HasPrefix(w, "--") && strings.Contains(w, "=")
}

// stripQuotes strips one pair of matching quotes around a word.
func stripQuotes(w string) string {
	if len(w) >= 2 && (w[0] == '\'' || w[0] == '"') && w[len(w)-1] == w[0] {
		return w[1 : len(w)-1]
	}
	return w
}

// WithPackages returns df with block k holding exactly pkgs. A missing
// block is added after the last FROM (the final stage), the apt block
// before the pip block, so system libraries exist when pip builds wheels.
func WithPackages(df []byte, k Kind, pkgs []Package) ([]byte, error) {
	specs, err := revalidate(k, pkgs)
	if err != nil {
		return nil, err
	}
	lines, blocks, err := loadBlocks(df, k)
	if err != nil {
		return nil, err
	}
	eol := lineEnding(df)
	body := renderBlock(k, specs, eol)
	if b, ok := blocks[k]; ok {
		return joinParts(lines[:b.begin+1], body, lines[b.end:]), nil
	}
	if len(specs) == 0 {
		return slices.Clone(df), nil // nothing to add, so leave the file alone
	}
	return insertBlock(lines, blocks, k, body, eol)
}

// revalidate checks every spec again: a Package may have been built
// without Parse, and this is the last step before root's daemon runs it.
func revalidate(k Kind, pkgs []Package) ([]string, error) {
	specs := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		if _, err := Parse(k, p.Spec); err != nil {
			return nil, err
		}
		specs = append(specs, p.Spec)
	}
	return specs, nil
}

// renderBlock returns the lines between the markers. Specs are single
// quoted because '<' and '>' are shell redirections; validation
// guarantees they hold no quote.
func renderBlock(k Kind, specs []string, eol string) []string {
	if len(specs) == 0 {
		return nil
	}
	var out []string
	if k == System {
		out = append(out,
			"RUN apt-get update \\"+eol,
			" && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\"+eol)
		for _, s := range specs {
			out = append(out, "      '"+s+"' \\"+eol)
		}
		return append(out, " && rm -rf /var/lib/apt/lists/*"+eol)
	}
	out = append(out, "RUN pip install --no-cache-dir \\"+eol)
	for i, s := range specs {
		cont := " \\"
		if i == len(specs)-1 {
			cont = ""
		}
		out = append(out, "      '"+s+"'"+cont+eol)
	}
	return out
}

// insertBlock adds markers and body where block k belongs.
func insertBlock(lines []string, blocks map[Kind]blockSpan, k Kind, body []string, eol string) ([]byte, error) {
	from, ok := lastFrom(lines)
	if !ok {
		return nil, errors.New("Dockerfile has no FROM line: add one, e.g. FROM python:3.12")
	}
	begin, end, _ := blockMarkers(k)
	block := append(append([]string{begin + eol}, body...), end+eol)
	if p, ok := blocks[Pip]; k == System && ok && p.begin > from {
		return joinParts(lines[:p.begin], block, []string{eol}, lines[p.begin:]), nil
	}
	at := from + 1
	if s, ok := blocks[System]; k == Pip && ok && s.begin > from {
		at = s.end + 1
	}
	for other, o := range blocks {
		if o.begin < at && at <= o.end {
			return nil, fmt.Errorf("Dockerfile line %d: the last FROM is inside the ds01 %s block; move it out", from+1, other)
		}
	}
	head := slices.Clone(lines[:at])
	if last := len(head) - 1; !strings.HasSuffix(head[last], "\n") {
		head[last] += eol // the file ended without a newline
	}
	tail := lines[at:]
	if len(tail) > 0 && strings.TrimSpace(tail[0]) != "" {
		block = append(block, eol)
	}
	return joinParts(head, []string{eol}, block, tail), nil
}

// lastFrom returns the physical line where the last FROM instruction ends.
func lastFrom(lines []string) (int, bool) {
	insts := parseLines(lines, '\\').Insts
	for i := len(insts) - 1; i >= 0; i-- {
		if insts[i].Keyword == "FROM" {
			return insts[i].Last, true
		}
	}
	return 0, false
}

// findBlocks locates both kinds of blocks and checks their markers pair
// up: each block at most once, begin before end, no block in another.
func findBlocks(lines []string) (map[Kind]blockSpan, error) {
	blocks := map[Kind]blockSpan{}
	open, openAt := Kind(-1), 0
	for i, l := range lines {
		k, isBegin, ok := markerKind(strings.TrimSpace(l))
		if !ok {
			continue
		}
		if err := markerStep(blocks, open, k, isBegin, i); err != nil {
			return nil, err
		}
		if isBegin {
			open, openAt = k, i
			continue
		}
		blocks[k] = blockSpan{openAt, i}
		open = Kind(-1)
	}
	if open >= 0 {
		_, end, _ := blockMarkers(open)
		return nil, fmt.Errorf("Dockerfile line %d: the ds01 %s block has no end line %q: add it, or delete the begin line", openAt+1, open, end)
	}
	return blocks, nil
}

// markerStep checks one marker line against what came before it.
func markerStep(blocks map[Kind]blockSpan, open, k Kind, isBegin bool, i int) error {
	switch {
	case isBegin && open >= 0:
		return fmt.Errorf("Dockerfile line %d: the ds01 %s block starts inside the %s block: move it out", i+1, k, open)
	case isBegin && hasKind(blocks, k):
		return fmt.Errorf("Dockerfile line %d: the ds01 %s block appears twice: keep one", i+1, k)
	case !isBegin && open != k:
		return fmt.Errorf("Dockerfile line %d: the ds01 %s block's end line has no begin line before it: fix or delete it", i+1, k)
	}
	return nil
}

func hasKind(blocks map[Kind]blockSpan, k Kind) bool {
	_, ok := blocks[k]
	return ok
}

func markerKind(trimmed string) (k Kind, isBegin, ok bool) {
	switch trimmed {
	case SystemBegin:
		return System, true, true
	case SystemEnd:
		return System, false, true
	case PipBegin:
		return Pip, true, true
	case PipEnd:
		return Pip, false, true
	}
	return 0, false, false
}

func joinParts(parts ...[]string) []byte {
	var b strings.Builder
	for _, p := range parts {
		for _, l := range p {
			b.WriteString(l)
		}
	}
	return []byte(b.String())
}

// lineEnding is the style of the file's first line ending.
func lineEnding(df []byte) string {
	s := string(df)
	if i := strings.IndexByte(s, '\n'); i > 0 && s[i-1] == '\r' {
		return "\r\n"
	}
	return "\n"
}

// checkNotContinued refuses a block that Docker would read as part of an
// instruction begun before it: the block would not mean what it says.
func checkNotContinued(lines []string, blocks map[Kind]blockSpan) error {
	insts, _ := joinLines(lines, 0, len(lines), '\\')
	for _, k := range []Kind{System, Pip} {
		b, ok := blocks[k]
		for _, in := range insts {
			if ok && in.first < b.begin && in.last > b.begin {
				return fmt.Errorf("Dockerfile line %d: the instruction continues (\\) into the ds01 %s block; end it before the block", in.first+1, k)
			}
		}
	}
	return nil
}

// checkEscape refuses files whose continuation character is not '\':
// the blocks are written with '\' and would not parse as intended.
func checkEscape(lines []string) error {
	if escapeOf(lines) != '\\' {
		return errors.New("Dockerfile sets escape=`: image-update only edits Dockerfiles that use \\ to continue lines")
	}
	return nil
}
