package tux

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Helpers face guests (slirp) and the network (t2t) and need no privilege
// once set up: their sockets and files are open. So a helper started as
// root whose kind is unprivileged becomes nobody with no capabilities
// and no_new_privs after setup. Changing uid clears the parent-death
// signal, so it is set again, and a switch that died meanwhile is noticed.

// The parent-death signal and no_new_privs are attributes of a thread,
// and the kernel looks at the main thread's: so a helper's main goroutine
// stays on the main thread (package init runs there), where RunHelper
// then drops its privileges.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "tux-helper" {
		runtime.LockOSThread()
	}
}

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

// noNewPrivs keeps exec from ever granting privileges again: on every
// thread when the runtime can (no cgo), else on this one (the main
// thread, see init) from which later threads inherit it.
func noNewPrivs() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e == 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %v", err)
	}
	return nil
}
