package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

// Spawn runs `self switch -c CONFIG` in the background, in its own
// session with its log in cfg.LogFile(), and returns its pid once it
// answers. A switch already answering is not started twice (already).
func Spawn(cfg *config.Config, self string, extra ...string) (pid int, already bool, err error) {
	sock := "unix:" + cfg.ServerName
	if c, err := proto.Dial(sock, cfg.Password); err == nil {
		c.Close()
		return 0, true, nil
	}
	if err := config.PrepareWorkDir(cfg.WorkDir); err != nil {
		return 0, false, err
	}
	logf, err := config.OpenNoFollow(cfg.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, false, err
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, false, err
	}
	defer null.Close()
	// os.StartProcess rather than os/exec: the switch is one process
	// started once; the daemon package keeps out of running commands.
	p, err := os.StartProcess(self, append([]string{self, "switch", "-c", cfg.Path}, extra...), &os.ProcAttr{
		Files: []*os.File{null, logf, logf},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, false, fmt.Errorf("starting the switch: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		st, err := p.Wait()
		if err == nil {
			err = errors.New(st.String())
		}
		exited <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return 0, false, fmt.Errorf("the switch exited at start (%v); see %s", err, cfg.LogFile())
		default:
		}
		if c, err := proto.Dial(sock, cfg.Password); err == nil {
			c.Close()
			return p.Pid, false, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, false, fmt.Errorf("the switch did not answer within 20 s; see %s", cfg.LogFile())
}

// StopSwitch asks the switch on c to stop and waits until it closed the
// connection and, when local, until its process exited (within 90 s).
// It closes c.
func StopSwitch(c *proto.Client, local bool) error {
	defer c.Close()
	// The pid, to wait for the process itself and not only for the
	// connection to close.
	pid := 0
	var pong proto.Pong
	if c.Do(proto.Ping, &pong) == nil {
		pid = pong.Pid
	}
	if err := c.Do(proto.Stop, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	select {
	case <-c.Done():
	case <-time.After(time.Until(deadline)):
		return errors.New("the switch did not stop within 90 s")
	}
	if pid > 0 && local {
		for alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the switch (pid %d) is still running 90 s after stop", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
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

// CleanStale removes the control socket and pid file of a switch that is
// gone (nothing answers, its pid is dead); it reports whether it did.
func CleanStale(cfg *config.Config) bool {
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
