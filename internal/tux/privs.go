package tux

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Helpers face guests (slirp) and the network (t2t) and need no privilege
// once set up: their sockets and files are open. So a helper started as
// root whose kind is unprivileged becomes nobody with no capabilities
// and no_new_privs after setup. Changing uid clears the parent-death
// signal, so it is set again, and a switch that died meanwhile is noticed.

// NobodyID is the uid and gid unprivileged helpers run as.
const NobodyID = 65534

// unprivileged marks a kind's running helper that drops root after setup.
type unprivileged interface{ unprivileged() }

func dropToNobody() error {
	if os.Geteuid() != 0 {
		return noNewPrivs() // already a plain user
	}
	ppid := os.Getppid()
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("dropping root: setgroups: %v", err)
	}
	if err := syscall.Setresgid(NobodyID, NobodyID, NobodyID); err != nil {
		return fmt.Errorf("dropping root: setgid: %v", err)
	}
	if err := syscall.Setresuid(NobodyID, NobodyID, NobodyID); err != nil {
		return fmt.Errorf("dropping root: setuid: %v", err)
	}
	if err := noNewPrivs(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("parent-death signal: %v", err)
	}
	if os.Getppid() != ppid {
		os.Exit(1) // the switch died before the signal was set again
	}
	return nil
}

// noNewPrivs keeps exec from ever granting privileges again.
func noNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %v", err)
	}
	return nil
}
