package transfer

import (
	"errors"
	"fmt"
)

// scpOpts are the flags OpenSSH's scp passes to its remote side.
type scpOpts struct {
	sink      bool // -t: receive files
	source    bool // -f: send files
	recursive bool // -r
	preserve  bool // -p: times, and modes as sent
	targetDir bool // -d: the target must be a directory
	paths     []string
}

// parseSCPArgs reads scp's remote argv (the words after "scp") as getopt
// would: flags may be grouped ("-pr"), "--" or the first non-flag word
// ends them.
func parseSCPArgs(args []string) (scpOpts, error) {
	var o scpOpts
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, c := range a[1:] {
			switch c {
			case 't':
				o.sink = true
			case 'f':
				o.source = true
			case 'r':
				o.recursive = true
			case 'p':
				o.preserve = true
			case 'd':
				o.targetDir = true
			case 'v', 'q', 'T':
				// Verbosity and client-side name checks: nothing to do here.
			default:
				return o, fmt.Errorf("unknown option -%c", c)
			}
		}
	}
	o.paths = args[i:]
	switch {
	case o.sink == o.source:
		return o, errors.New("need exactly one of -t and -f")
	case len(o.paths) == 0:
		return o, errors.New("missing path")
	case o.sink && len(o.paths) != 1:
		return o, errors.New("ambiguous target")
	}
	return o, nil
}
