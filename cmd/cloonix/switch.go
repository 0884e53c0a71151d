package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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
		cfg, err := config.Load(flagConfig, createDefault())
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
		cfg, err := config.Load(flagConfig, createDefault())
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
		resumeVMs, err := checkJournal(cfg) // resume.go
		if err != nil {
			return err
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
		p := exec.Command(self, append([]string{"switch", "-c", cfg.Path}, resumeArgs()...)...)
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
				if flagResume {
					return waitResumed(sock, cfg.Password, resumeVMs)
				}
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
	Long: "stop every machine and helper, then the switch; returns once the switch process has\n" +
		"exited and its sockets are gone.",
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		cfg, cfgErr := loadConfig()
		c, err := connect()
		if err != nil {
			if cfgErr == nil && flagServer == "" && cleanStale(cfg) {
				fmt.Println("switch was not running; removed its stale socket")
				return nil
			}
			return err
		}
		// The pid, to wait for the process itself and not only for the
		// connection to close.
		pid := 0
		if out, err := c.Call("ping", nil); err == nil {
			var pong struct {
				Pid int `xml:"pid,attr"`
			}
			if xml.Unmarshal(out, &pong) == nil {
				pid = pong.Pid
			}
		}
		if _, err := c.Call("stop", nil); err != nil {
			c.Close()
			return err
		}
		deadline := time.Now().Add(90 * time.Second)
		select {
		case <-c.Done():
		case <-time.After(time.Until(deadline)):
			c.Close()
			return errors.New("the switch did not stop within 90 s")
		}
		c.Close()
		// Only a local switch can be waited for by pid.
		local := flagServer == "" || strings.HasPrefix(flagServer, "unix:")
		if pid > 0 && local {
			for alive(pid) {
				if time.Now().After(deadline) {
					return fmt.Errorf("the switch (pid %d) is still running 90 s after stop", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if cfgErr == nil && flagServer == "" {
			cleanStale(cfg)
		}
		fmt.Println("switch stopped")
		return nil
	},
}

// alive tells whether pid still runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// cleanStale removes the control socket and pid file of a switch that is
// gone (nothing answers, its pid is dead); it reports whether it did.
func cleanStale(cfg *config.Config) bool {
	if c, err := net.DialTimeout("unix", cfg.ServerName, time.Second); err == nil {
		c.Close()
		return false
	}
	if b, err := os.ReadFile(cfg.PidFile()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && alive(pid) {
			return false
		}
	}
	removed := false
	if fi, err := os.Lstat(cfg.ServerName); err == nil && fi.Mode()&os.ModeSocket != 0 {
		removed = os.Remove(cfg.ServerName) == nil
	}
	if os.Remove(cfg.PidFile()) == nil {
		removed = true
	}
	return removed
}

func init() {
	rootCmd.AddCommand(switchCmd, startCmd, stopCmd)
}

// createDefault tells whether start/switch may write the default config:
// with no -c, or with -c naming the default path itself (as make demo does).
func createDefault() bool {
	if flagConfig == "" {
		return true
	}
	abs, err := filepath.Abs(flagConfig)
	return err == nil && abs == config.DefaultPath()
}
