package main

import (
	"errors"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"cloonix/internal/guest"
)

// The same static binary is the guest agent. As PID 1 (the busybox
// image's /sbin/init) it runs the init at once, before cobra sees the
// kernel's arguments.
func init() {
	if os.Getpid() == 1 && runtime.GOOS == "linux" {
		guest.RunInit()
	}
}

// agentOptions are agent's flags: which part of the agent to run.
type agentOptions struct{ boot, apply, serve bool }

func newAgentCmd() *cobra.Command {
	var o agentOptions
	cmd := &cobra.Command{
		Use:    "agent (--boot | --apply | --serve)",
		Short:  "the guest agent (runs inside guests, see docs/images.md)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.boot:
				return guest.Boot()
			case o.apply:
				return guest.ApplyOnce()
			case o.serve:
				return guest.Serve()
			}
			return errors.New("agent: give --boot (busybox image worker), --apply (apply the config CD) or --serve (serve the agent line)")
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.boot, "boot", false, "everything after PID 1's mounts: modules, eth names, config CD, console, rc.d, agent line")
	f.BoolVar(&o.apply, "apply", false, "eth names and the config CD, once per boot (systemd images)")
	f.BoolVar(&o.serve, "serve", false, "run /etc/rc.d and serve the agent line (systemd images)")
	return cmd
}

func init() {
	rootCmd.AddCommand(newAgentCmd())
}
