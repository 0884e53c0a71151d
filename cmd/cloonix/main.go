// Command cloonix is the whole of cloonix in one binary: the switch
// daemon, its clients (ctrl, fconf, event, graph, exec, console), the tux
// helpers and image building. This package only turns flags into calls.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootOptions are the flags every command shares (persistent flags).
type rootOptions struct {
	config  string // -c: the switch's config file
	server  string // --server: the switch's address, overriding the config
	bulkDir string // bulk --bulk-dir: the image directory
}

var rootOpts rootOptions

var rootCmd = &cobra.Command{
	Use:           "cloonix",
	Short:         "cloonix: a network emulation lab (virtual machines, lans, a switch)",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	rootCmd.PersistentFlags().StringVarP(&rootOpts.config, "config", "c", "", "switch config file (default ~/.config/cloonix/config.xml)")
	rootCmd.PersistentFlags().StringVar(&rootOpts.server, "server", "", "switch address: unix:PATH or tcp:HOST:PORT (default: from the config)")
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "cloonix:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
