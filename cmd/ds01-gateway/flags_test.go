package main

import "flag"

type testFlags struct {
	fs  *flag.FlagSet
	uid *int
	key *string
}

func newTestFlagSet() testFlags {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	return testFlags{fs: fs, uid: fs.Int("uid", -1, ""), key: fs.String("key-file", "", "")}
}
