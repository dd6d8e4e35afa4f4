// Command ds01-gateway is the DS01 SSH gateway: `ssh project@host` lands in
// a container of the user's project. See the README for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/ds01/ds01-gateway/transfer"
)

const usage = `usage:
  ds01-gateway serve [--config FILE] [--listen ADDR] [--data-dir DIR] [--dev]
  ds01-gateway user add NAME --uid N [--gid N] [--group G] [--system] --key-file FILE
  ds01-gateway user key add NAME --key-file FILE
  ds01-gateway user list
  ds01-gateway user remove NAME [--purge [--force] [--purge-workspaces]]
  ds01-gateway gpu-check               print the NVML GPU inventory
(every user command also takes --config FILE and --data-dir DIR)
`

// errUsage makes main exit 2 after printing the usage.
var errUsage = errors.New("usage")

func main() {
	err := run(os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "ds01-gateway: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "user":
		return userCmd(args[1:])
	case "gpu-check":
		return gpuCheck(args[1:])
	case "transfer":
		// Internal: the gateway re-executes itself as a user to serve a
		// file transfer (see package transfer).
		os.Exit(transfer.ChildMain(args[1:]))
	case "pod-helper":
		podHelper(args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	return errUsage
}

// common are the flags every command takes.
type common struct {
	config  string
	dataDir string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "YAML configuration file")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for the store and host keys (overrides data_dir)")
}

// load reads the configuration and applies the flags over it.
func (c *common) load() (Config, error) {
	cfg, err := loadConfig(c.config)
	if err != nil {
		return cfg, err
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	return cfg, nil
}

// parse parses flags anywhere among the arguments ("user add NAME --uid 5"
// as well as "user add --uid 5 NAME") and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(os.Stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
