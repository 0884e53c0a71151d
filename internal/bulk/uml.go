package bulk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"cloonix/internal/hostcpu"
)

// Debian's linux.uml 6.1 saves the guest's FPU state with ptrace
// PTRACE_{GET,SET}REGSET NT_X86_XSTATE using a fixed 2696-byte buffer (the
// AVX-512 layout). Hosts whose xstate is larger (AMX, APX, ...) refuse
// the SET with EFAULT and every guest process dies ("userspace - ptrace
// set fp regs failed, errno = 14"); newer UML sizes the buffer at run
// time. On such hosts `bulk build kernels` writes <bulk_dir>/linux.uml, a
// copy with xstate support switched off, so UML falls back to the
// 512-byte FXSAVE area (PTRACE_{GET,SET}FPREGS). That area does not hold
// AVX registers, so guest programs must not use AVX: the agent sets
// GLIBC_TUNABLES and GODEBUG for what it starts (guest.GuestEnv), and the
// machine manager puts the same two variables on the UML kernel command
// line so that init gets them (docs/images.md).

// umlXstatePatch finds the "have_xstate_support = 1" store after the
// PTRACE_GETREGSET NT_X86_XSTATE probe in arch_init_registers, and the
// buffer size the binary uses. It returns the offset of the store's
// immediate (the byte to clear).
func umlXstatePatch(bin []byte) (off int, bufSize int, err error) {
	store := []byte{0xc7, 0x00, 0x01, 0x00, 0x00, 0x00} // movl $1,(%rax)
	getregset := []byte{0xbf, 0x04, 0x42, 0x00, 0x00}   // mov $PTRACE_GETREGSET,%edi
	xstate := []byte{0xba, 0x02, 0x02, 0x00, 0x00}      // mov $NT_X86_XSTATE,%edx
	iovLen := []byte{0x48, 0xc7, 0x45}                  // movq $imm32,disp8(%rbp)
	found := -1
	for i := 0; ; {
		j := bytes.Index(bin[i:], store)
		if j < 0 {
			break
		}
		at := i + j
		lo := max(0, at-80)
		w := bin[lo:at]
		if bytes.Contains(w, getregset) && bytes.Contains(w, xstate) {
			if found >= 0 {
				return 0, 0, errors.New("linux.uml: two xstate probes found; not patching")
			}
			found = at
			if k := bytes.Index(w, iovLen); k >= 0 && k+8 <= len(w) {
				bufSize = int(binary.LittleEndian.Uint32(w[k+4 : k+8]))
			}
		}
		i = at + 1
	}
	if found < 0 {
		return 0, 0, errors.New("linux.uml: xstate probe not found")
	}
	return found + 2, bufSize, nil
}

// umlBinary writes <bulk_dir>/linux.uml: a copy of /usr/bin/linux.uml,
// with xstate switched off when the host's xstate does not fit the
// binary's buffer. It returns whether it patched, and a key for stamps.
func umlBinary(dir string) (bool, string, error) {
	bin, err := os.ReadFile("/usr/bin/linux.uml")
	if err != nil {
		return false, "", fmt.Errorf("%v (apt-get install user-mode-linux)", err)
	}
	off, size, perr := umlXstatePatch(bin)
	host, herr := hostcpu.XstateSize()
	patch := perr == nil && herr == nil && size != 0 && host != size
	key := fmt.Sprintf("host=%d,uml=%d,patch=%v", host, size, patch)
	if patch {
		bin[off] = 0
	}
	if err := writeAtomic(filepath.Join(dir, "linux.uml"), bin, 0o755); err != nil {
		return false, "", err
	}
	if patch {
		logf("linux.uml: the host's xstate is %d bytes, linux.uml's buffer %d: xstate switched off in %s/linux.uml (guests must not use AVX)", host, size, dir)
	}
	return patch, key, nil
}
