package main

import (
	"github.com/spf13/cobra"

	"cloonix/internal/machine"
)

// uml-exec is how the switch starts linux.uml on hosts whose XSAVE area
// UML cannot handle (see internal/machine/umlexec.go); not for users.
var umlExecCmd = &cobra.Command{
	Use:                "uml-exec -- LINUX ARGS...",
	Short:              "internal: exec linux.uml under the XSTATE seccomp filter",
	Hidden:             true,
	DisableFlagParsing: true,
	RunE: func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		return machine.ExecUML(args)
	},
}

func init() { rootCmd.AddCommand(umlExecCmd) }
