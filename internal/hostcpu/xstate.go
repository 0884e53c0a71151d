// Package hostcpu answers questions about the host CPU that UML cares
// about: both the image builder (which patches linux.uml) and the machine
// manager (which wraps the stock one) need the same answer.
package hostcpu

import (
	"runtime"
	"syscall"
	"unsafe"
)

const (
	ptraceGetRegset = 0x4204
	ntX86Xstate     = 0x202
)

// XstateSize is the size of the NT_X86_XSTATE regset the host gives a
// traced process: what PTRACE_SETREGSET insists on, and what Debian's
// linux.uml 6.1 has a fixed 2696-byte buffer for.
func XstateSize() (int, error) {
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	defer runtime.UnlockOSThread()
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Ptrace: true}})
	if err != nil {
		return 0, err
	}
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	}()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<16)
	iov := syscall.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	if _, _, e := syscall.Syscall6(syscall.SYS_PTRACE, ptraceGetRegset, uintptr(pid), ntX86Xstate, uintptr(unsafe.Pointer(&iov)), 0, 0); e != 0 {
		return 0, e
	}
	return int(iov.Len), nil
}
