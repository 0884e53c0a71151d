package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"cloonix/internal/config"
	"cloonix/internal/daemon"
)

var switchCmd = &cobra.Command{
	Use:   "switch",
	Short: "run the switch in the foreground (what start runs); logs go to stderr",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, err := config.Load(rootOpts.config, createDefault())
		if err != nil {
			return err
		}
		d := daemon.New(cfg)
		d.SetResume(flagResume, flagDiscard) // resume.go
		if self, err := os.Executable(); err == nil {
			d.SetReaper([]string{self, "reaper"})
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			<-sig
			d.Stop()
		}()
		return d.Run()
	},
}

var startCmd = &cobra.Command{
	Use:   "start",
	Short: "start the switch in the background; return once it answers",
	Long: "start the switch in the background and return once it answers. On first use, with no -c,\n" +
		"the default config is written to ~/.config/cloonix/config.xml with a random password.",
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, err := config.Load(rootOpts.config, createDefault())
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		resumeVMs, err := checkJournal(cfg) // resume.go
		if err != nil {
			return err
		}
		pid, already, err := daemon.Spawn(cfg, self, resumeArgs()...)
		switch {
		case err != nil:
			return err
		case already:
			fmt.Printf("switch %q already running on %s\n", cfg.NetworkName, cfg.ServerName)
			return nil
		}
		fmt.Printf("switch %q started (pid %d), control unix:%s tcp:%s, config %s\n", cfg.NetworkName, pid, cfg.ServerName, cfg.TCPAddr(), cfg.Path)
		if flagResume {
			return waitResumed("unix:"+cfg.ServerName, cfg.Password, resumeVMs)
		}
		return nil
	},
}

var stopCmd = &cobra.Command{
	Use:   "stop",
	Short: "stop every machine and helper, then the switch",
	Long: "stop every machine and helper, then the switch; returns once the switch process has\n" +
		"exited and its sockets are gone.",
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, cfgErr := loadConfig()
		c, err := connect()
		if err != nil {
			if cfgErr == nil && rootOpts.server == "" && daemon.CleanStale(cfg) {
				fmt.Println("switch was not running; removed its stale socket")
				return nil
			}
			return err
		}
		// Only a local switch can be waited for by pid.
		local := rootOpts.server == "" || strings.HasPrefix(rootOpts.server, "unix:")
		if err := daemon.StopSwitch(c, local); err != nil {
			return err
		}
		if cfgErr == nil && rootOpts.server == "" {
			daemon.CleanStale(cfg)
		}
		fmt.Println("switch stopped")
		return nil
	},
}

func init() {
	rootCmd.AddCommand(switchCmd, startCmd, stopCmd)
}

// createDefault tells whether start/switch may write the default config:
// with no -c, or with -c naming the default path itself (as make demo does).
func createDefault() bool {
	if rootOpts.config == "" {
		return true
	}
	abs, err := filepath.Abs(rootOpts.config)
	return err == nil && abs == config.DefaultPath()
}
