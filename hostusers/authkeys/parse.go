package authkeys

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Parse reads the lines of an authorized_keys file. A line that does not
// parse, or whose options the gateway cannot honour, is left out and
// named in problems ("line 3: ..."), so the admin can see why a key does
// not work while the file's other keys still do, as with sshd.
func Parse(data []byte, loc *time.Location) (entries []Entry, problems []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFileSize)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := ParseLine(line, loc)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("line %d: %v", n+1, err))
	}
	return entries, problems
}

// ParseLine reads one authorized_keys line: [options] type base64 [comment].
func ParseLine(line string, loc *time.Location) (Entry, error) {
	pk, comment, opts, rest, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Entry{}, fmt.Errorf("not a public key: %w", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return Entry{}, fmt.Errorf("more than one key on the line")
	}
	o, err := parseOptions(opts, loc)
	if err != nil {
		return Entry{}, fmt.Errorf("key %s refused: %w", gossh.FingerprintSHA256(pk), err)
	}
	return Entry{Key: pk, Fingerprint: gossh.FingerprintSHA256(pk), Comment: comment, Options: o}, nil
}
