package main

import (
	"os"

	"github.com/spf13/cobra"

	"cloonix/internal/machine"
)

// reaper kills the switch's guests if the switch dies (see
// internal/machine/reaper.go); the switch starts it; not for users.
var reaperCmd = &cobra.Command{
	Use:    "reaper",
	Short:  "internal: kill the switch's guest process groups when the switch dies",
	Hidden: true,
	Args:   cobra.NoArgs,
	Run:    func(cmd *cobra.Command, args []string) { machine.RunReaper(os.Stdin) },
}

func init() { rootCmd.AddCommand(reaperCmd) }
