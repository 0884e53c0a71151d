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

var (
	agentBoot, agentApply, agentServe bool
)

var agentCmd = &cobra.Command{
	Use:    "agent (--boot | --apply | --serve)",
	Short:  "the guest agent (runs inside guests, see docs/images.md)",
	Hidden: true,
	Args:   cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		switch {
		case agentBoot:
			return guest.Boot()
		case agentApply:
			return guest.ApplyOnce()
		case agentServe:
			return guest.Serve()
		}
		return errors.New("agent: give --boot (busybox image worker), --apply (apply the config CD) or --serve (serve the agent line)")
	},
}

func init() {
	agentCmd.Flags().BoolVar(&agentBoot, "boot", false, "everything after PID 1's mounts: modules, eth names, config CD, console, rc.d, agent line")
	agentCmd.Flags().BoolVar(&agentApply, "apply", false, "eth names and the config CD, once per boot (systemd images)")
	agentCmd.Flags().BoolVar(&agentServe, "serve", false, "run /etc/rc.d and serve the agent line (systemd images)")
	rootCmd.AddCommand(agentCmd)
}
