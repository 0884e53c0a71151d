package machine

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"cloonix/internal/guest"
	"cloonix/internal/hostcpu"
)

// Debian's linux.uml (6.1, and 6.12 as well) saves a guest thread's FPU
// state with PTRACE_GETREGSET/NT_X86_XSTATE into an 832-byte buffer and
// restores it with PTRACE_SETREGSET, which the host refuses (EFAULT) when
// its XSAVE area is larger (AVX-512, AMX): the guest's first process then
// dies ("ptrace set fp regs failed, errno = 14", kernel panic). UML only
// uses the XSTATE regset when reading it works at start, else it falls
// back to PTRACE_GETFPREGS/SETFPREGS (the 512-byte FXSAVE area), which
// every host accepts. So on such hosts (NeedXstateWorkaround) UML is started through a seccomp
// filter that makes the XSTATE regset requests fail with EIO (unless the
// bulk dir holds a linux.uml patched to the same effect by `cloonix bulk
// build`, which is then used as it is). The cost:
// AVX/AVX-512 register state beyond SSE is not kept when UML switches
// between two threads of one guest process.

// guestNoAVXEnv keeps the usual guest programs on SSE when UML cannot
// keep AVX state across thread switches: Go and glibc pick their string
// and memory routines by CPUID, so without these a multi-threaded guest
// program (the agent, FRR) has its registers corrupted.
var guestNoAVXEnv = []string{
	// The same values as guest.GuestEnv gives what the agent starts.
	"GODEBUG=cpu.all=off",
	"GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_Fast_Unaligned_Load,-ERMS,-FSRM",
	guest.NoAVXOpenSSL,
}

const (
	ptraceGetRegset = 0x4204
	ptraceSetRegset = 0x4205
	ntX86Xstate     = 0x202
	auditArchX8664  = 0xc000003e
	sysPtrace       = 101
	seccompRetAllow = 0x7fff0000
	seccompRetErrno = 0x00050000
	prSetNoNewPrivs = 38
	prSetSeccomp    = 22
	seccompModeFilt = 2
)

type sockFilter struct {
	code uint16
	jt   uint8
	jf   uint8
	k    uint32
}

type sockFprog struct {
	n      uint16
	filter *sockFilter
}

// BPF opcodes.
const (
	bpfLdWAbs = 0x20 // BPF_LD|BPF_W|BPF_ABS
	bpfJeqK   = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	bpfRetK   = 0x06 // BPF_RET|BPF_K
)

// xstateFilter fails ptrace(PTRACE_{GET,SET}REGSET, pid, NT_X86_XSTATE, ...)
// with EIO and allows everything else. seccomp_data: nr at 0, arch at 4,
// args[0] at 16, args[2] at 32 (low halves, little endian).
func xstateFilter() []sockFilter {
	return []sockFilter{
		{bpfLdWAbs, 0, 0, 4},
		{bpfJeqK, 0, 7, auditArchX8664}, // other arch: allow
		{bpfLdWAbs, 0, 0, 0},
		{bpfJeqK, 0, 5, sysPtrace},
		{bpfLdWAbs, 0, 0, 16},
		{bpfJeqK, 1, 0, ptraceGetRegset},
		{bpfJeqK, 0, 2, ptraceSetRegset},
		{bpfLdWAbs, 0, 0, 32},
		{bpfJeqK, 1, 0, ntX86Xstate},
		{bpfRetK, 0, 0, seccompRetAllow},
		{bpfRetK, 0, 0, seccompRetErrno | uint32(syscall.EIO)},
	}
}

// umlXstateBuf is the XSTATE buffer of Debian's linux.uml 6.1 (the
// AVX-512 layout). The host kernel's PTRACE_SETREGSET NT_X86_XSTATE
// refuses any buffer whose size is not exactly its own xstate size
// (arch/x86/kernel/fpu/regset.c), so a smaller host (2688 bytes, AVX
// without AVX-512) needs the workaround as much as a larger one; `bulk
// build` patches linux.uml on the same condition (bulk/uml.go).
const umlXstateBuf = 2696

var (
	xstateOnce sync.Once
	xstateNeed bool
)

// NeedXstateWorkaround tells whether this host's XSTATE regset differs
// from the size UML's buffer has (AMX and APX hosts are larger, AVX-only
// ones smaller). It asks the host kernel
// (PTRACE_GETREGSET on a traced child); if that fails, AMX in the CPU
// flags decides.
func NeedXstateWorkaround() bool {
	xstateOnce.Do(func() {
		if n, err := hostcpu.XstateSize(); err == nil {
			xstateNeed = n != umlXstateBuf
			return
		}
		b, err := os.ReadFile("/proc/cpuinfo")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "flags") {
				for _, f := range strings.Fields(line) {
					xstateNeed = xstateNeed || f == "amx_tile"
				}
				return
			}
		}
	})
	return xstateNeed
}

// ExecUML replaces the current process by argv (a linux.uml command
// line) under the XSTATE filter. It returns only on error.
func ExecUML(argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("uml-exec: no command")
	}
	runtime.LockOSThread() // the filter and the exec must be on one thread
	f := xstateFilter()
	prog := sockFprog{n: uint16(len(f)), filter: &f[0]}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
		return fmt.Errorf("uml-exec: no_new_privs: %v", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetSeccomp, seccompModeFilt, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("uml-exec: seccomp filter: %v", e)
	}
	runtime.KeepAlive(f)
	return syscall.Exec(argv[0], argv, os.Environ())
}
