package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/config"
	"cloonix/internal/daemon"
	"cloonix/internal/proto"
)

var switchCmd = &cobra.Command{
	Use:   "switch",
	Short: "run the switch in the foreground (what start runs); logs go to stderr",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, err := config.Load(flagConfig, flagConfig == "")
		if err != nil {
			return err
		}
		d := daemon.New(cfg)
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
		cfg, err := config.Load(flagConfig, flagConfig == "")
		if err != nil {
			return err
		}
		sock := "unix:" + cfg.ServerName
		if c, err := proto.Dial(sock, cfg.Password); err == nil {
			c.Close()
			fmt.Printf("switch %q already running on %s\n", cfg.NetworkName, cfg.ServerName)
			return nil
		}
		if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
			return fmt.Errorf("work_dir %s: %v", cfg.WorkDir, err)
		}
		logf, err := os.OpenFile(cfg.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer logf.Close()
		self, err := os.Executable()
		if err != nil {
			return err
		}
		p := exec.Command(self, "switch", "-c", cfg.Path)
		p.Stdout, p.Stderr = logf, logf
		p.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := p.Start(); err != nil {
			return fmt.Errorf("starting the switch: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- p.Wait() }()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				return fmt.Errorf("the switch exited at start (%v); see %s", err, cfg.LogFile())
			default:
			}
			if c, err := proto.Dial(sock, cfg.Password); err == nil {
				c.Close()
				fmt.Printf("switch %q started (pid %d), control unix:%s tcp:%s, config %s\n", cfg.NetworkName, p.Process.Pid, cfg.ServerName, cfg.TCPAddr(), cfg.Path)
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Errorf("the switch did not answer within 20 s; see %s", cfg.LogFile())
	},
}

var stopCmd = &cobra.Command{
	Use:   "stop",
	Short: "stop every machine and helper, then the switch",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		if _, err := c.Call("stop", nil); err != nil {
			c.Close()
			return err
		}
		select {
		case <-c.Done():
		case <-time.After(60 * time.Second):
			c.Close()
			return errors.New("the switch did not stop within 60 s")
		}
		fmt.Println("switch stopped")
		return nil
	},
}

func init() {
	rootCmd.AddCommand(switchCmd, startCmd, stopCmd)
}
