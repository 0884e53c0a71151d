package machine

import (
	"fmt"
	"strconv"
)

// UMLArgs is the User-Mode-Linux command line for s. conFD and agentFD
// are the inherited descriptors of the console (con0) and the agent line
// (ssl1, the guest's /dev/ttyS1). The root disk is ubd0=COW,ROOTFS so the
// reference image is only read; the CD is ubd1, read-only.
func UMLArgs(s *Spec, conFD, agentFD int) []string {
	a := []string{s.Kernel,
		"mem=" + strconv.Itoa(s.Mem) + "M",
		// uml_dir/umid keep UML's pid file and mconsole socket in Dir.
		"uml_dir=" + s.Dir, "umid=uml",
		"ubd0=" + s.OverlayPath() + "," + s.Image.Path,
		"ubd1r=" + s.CDPath(),
		// No xterms: every line is null but the console and the agent's.
		"con=null", "ssl=null",
		fmt.Sprintf("con0=fd:%d,fd:%d", conFD, conFD),
		fmt.Sprintf("ssl1=fd:%d,fd:%d", agentFD, agentFD),
	}
	for i, sock := range s.EthSocks {
		if s.Transport == "daemon" {
			a = append(a, fmt.Sprintf("eth%d=daemon,%s,unix,%s", i, MAC(s.Name, i), sock))
		} else {
			a = append(a, fmt.Sprintf("vec%d:transport=bess,dst=%s,mac=%s", i, sock, MAC(s.Name, i)))
		}
	}
	a = append(a, KernelCmdline(s, "/dev/ubda", "", "/dev/ubdb"))
	// Debian's linux.uml has btrfs built in, so at every boot it times its
	// raid6 and xor routines (about a second of CPU, half its boot) and
	// calibrates a delay loop: guests use neither (no md raid, no btrfs
	// raid56), so those initcalls are skipped and the loop preset.
	a = append(a, "initcall_blacklist=raid6_select_algo,calibrate_xor_blocks", "lpj=8724480")
	// It also registers 256 legacy BSD pty pairs (/dev/ptyXX, 512 device
	// nodes) at every boot: a third of a busybox boot's CPU (bench/scale:
	// 0.63-0.82 CPU-s per boot without them, 1.05-1.14 with) and 3 MB per
	// guest. Everything uses Unix98 ptys (/dev/pts), which stay.
	a = append(a, "pty.legacy_count=0")
	// UML has no swap, and the kernel's overcommit heuristic refused to
	// exec the agent (a static Go binary) in 64 MB guests about one boot in
	// six ("__vm_enough_memory ... Requested init /sbin/init failed (error
	// -12)"); always granting mappings lets small guests boot every time.
	a = append(a, "sysctl.vm.overcommit_memory=1")
	if s.NoAVX {
		// The kernel hands these to init's environment; see umlexec.go.
		a = append(a, guestNoAVXEnv...)
	}
	return a
}
