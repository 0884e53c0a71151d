package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// KVM is used only when it really runs a guest: /dev/kvm may exist while
// guests hang (here, nested KVM runs real-mode code but a Linux kernel
// hangs once it leaves real mode). So the probe boots the kernel guests
// will boot, with no root disk and panic=-1 under -no-reboot: a working
// KVM panics and exits within a second or two. No exit within
// ProbeTimeout, or any failure, means TCG. Without a kernel at hand it
// falls back to a 64 KiB firmware whose reset vector writes to QEMU's
// isa-debug-exit port (QEMU then exits with status (1<<1)|1 = 3).

// probeBIOS is a firmware image: 16-byte reset vector at its end (mapped
// at 0xFFFFFFF0) with `mov al,1; out 0xf4,al; hlt; jmp $-1`.
func probeBIOS() []byte {
	b := make([]byte, 64<<10)
	copy(b[len(b)-16:], []byte{0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd})
	return b
}

// ProbeTimeout bounds the KVM probe.
var ProbeTimeout = 8 * time.Second

// ProbeKernel picks the kernel the probe boots: the bulk kernel, else the
// host's newest, else "" (firmware probe).
func ProbeKernel(bulkDir string) string {
	if p := filepath.Join(bulkDir, "vmlinuz"); fileExists(p) {
		return p
	}
	m, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// ProbeKVM reports whether QEMU runs a guest under KVM here; err says
// why not.
func ProbeKVM(qemu, kernel, tmpDir string) (bool, error) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, fmt.Errorf("/dev/kvm: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	args := []string{"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc", "-accel", "kvm", "-no-reboot"}
	want := 0
	if kernel != "" {
		args = append(args, "-m", "128", "-kernel", kernel, "-append", "panic=-1 console=ttyS0 loglevel=1")
	} else {
		dir, err := os.MkdirTemp(tmpDir, "kvmprobe")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		bios := filepath.Join(dir, "probe.bin")
		if err := os.WriteFile(bios, probeBIOS(), 0o644); err != nil {
			return false, err
		}
		args = append(args, "-m", "16", "-bios", bios, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
		want = 3
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	// A hung probe must not outlive us (a switch stopped mid-probe).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return false, fmt.Errorf("a KVM guest did not finish booting within %v", ProbeTimeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return false, err
	}
	if code == want {
		return true, nil
	}
	return false, fmt.Errorf("QEMU with KVM exited with status %d: %s", code, out)
}

var (
	probeOnce sync.Once
	probeKVM  bool
	probeWhy  error
)

// ResolveAccel turns the config's <accel> (auto, kvm, tcg) into kvm or
// tcg; auto probes KVM once per process.
func ResolveAccel(want, qemu, kernel, tmpDir string) (string, error) {
	switch want {
	case "tcg":
		return "tcg", nil
	case "kvm":
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return "", fmt.Errorf("<accel>kvm</accel> in the config but /dev/kvm is missing (%v); use auto or tcg", err)
		}
		return "kvm", nil
	}
	probeOnce.Do(func() { probeKVM, probeWhy = ProbeKVM(qemu, kernel, tmpDir) })
	if probeKVM {
		return "kvm", nil
	}
	return "tcg", nil
}

// KVMProbeResult is the cached probe outcome (false, reason) once run.
func KVMProbeResult() (bool, error) { return probeKVM, probeWhy }
