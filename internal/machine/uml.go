package machine

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// UMLKind runs a User-Mode-Linux guest: linux.uml is the guest kernel
// as a host process; its root is a filesystem image under a COW file.
type UMLKind struct{}

// Name is the add_vm type.
func (UMLKind) Name() string { return UML }

// QueuedBoots: UML boots are queued (kind.go).
func (UMLKind) QueuedBoots() bool { return true }

// Check validates a UML spec: one CPU, a filesystem image (not a disk),
// the bess or daemon transport, and picks linux.uml and the xstate
// workaround.
func (UMLKind) Check(s *Spec) error {
	s.Type = UML
	if s.CPU != Unset && s.CPU != 1 {
		return fmt.Errorf("vm %s: UML guests have one CPU; drop --cpu or use --type kvm", s.Name)
	}
	s.Transport = strings.ToLower(s.Transport)
	if s.Transport == "" {
		s.Transport = "bess"
	}
	if s.Transport != "bess" && s.Transport != "daemon" {
		return fmt.Errorf("vm %s: UML transport %q: use bess or daemon", s.Name, s.Transport)
	}
	if err := CheckBasics(s, 256, 1); err != nil {
		return err
	}
	if err := resolveRootfs(s); err != nil {
		return err
	}
	if s.Image.Disk {
		return fmt.Errorf("vm %s: %s is a bootable disk (partition table); UML needs a filesystem image such as busybox", s.Name, s.Image.Path)
	}
	if err := umlKernel(s); err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	s.PortKind = s.Transport
	s.EthSocks = EthSockets(s, ".sock")
	s.MgmtSock = MgmtSocket(s, ".sock")
	if s.Transport == "daemon" {
		s.EthSocks = EthSockets(s, ".ctl")
		s.MgmtSock = MgmtSocket(s, ".ctl")
	}
	return nil
}

// umlKernel picks linux.uml and whether it runs under the xstate
// workaround (umlexec.go): a copy that `bulk build` patched for this
// host's FPU, left in bulk_dir, needs none; the stock one or a --kernel
// does when the host needs it.
func umlKernel(s *Spec) (err error) {
	s.NoAVX = NeedXstateWorkaround()
	if s.KernelArg != "" {
		s.Kernel, err = kernelPath(s.Host.BulkDir, s.KernelArg)
		s.XstateFilter = s.NoAVX
		return err
	}
	if s.Kernel, err = LookProgram("linux.uml"); err != nil {
		return err
	}
	if p := filepath.Join(s.Host.BulkDir, "linux.uml"); fileExists(p) {
		s.Kernel = p
	} else {
		s.XstateFilter = s.NoAVX
	}
	return nil
}

// Start launches linux.uml; UML makes its COW file itself from
// ubd0=COW,ROOTFS.
func (UMLKind) Start(s Spec, ev Events) (Guest, error) {
	if s.KeepDisk {
		// The last run's pid file and mconsole socket (uml_dir/umid).
		_ = os.RemoveAll(filepath.Join(s.Dir, "uml"))
	}
	m, err := startProcess(s, ev, umlPlumbing)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// umlPlumbing makes two socket pairs: fd 3 is con0 (the console), fd 4
// is ssl1 (ttyS1, the agent line).
func umlPlumbing(m *Machine) (*plumbing, error) {
	conHost, conGuest, err := socketPair()
	if err != nil {
		return nil, err
	}
	agHost, agGuest, err := socketPair()
	if err != nil {
		conHost.Close()
		conGuest.Close()
		return nil, err
	}
	p := &plumbing{extra: []*os.File{conGuest, agGuest}}
	consoleSide, err := fileConn(conHost)
	if err != nil {
		agHost.Close()
		return p, err
	}
	agentSide, err := fileConn(agHost)
	if err != nil {
		consoleSide.Close()
		return p, err
	}
	m.closers = append(m.closers, consoleSide, agentSide)
	p.args = UMLArgs(&m.Spec, 3, 4)
	if m.XstateFilter {
		self, err := os.Executable()
		if err != nil {
			return p, err
		}
		p.args = append([]string{self, "uml-exec", "--"}, p.args...)
	}
	p.connect = func() {
		m.console.Attach(consoleSide)
		m.setAgent(agentSide)
	}
	return p, nil
}

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
	socks, macs := s.EthSocks, []string{}
	for i := range s.EthSocks {
		macs = append(macs, MAC(s.Name, i))
	}
	if p, ok := s.MgmtPort(); ok { // the NIC after the eths
		socks, macs = append(socks[:len(socks):len(socks)], p.Path), append(macs, MgmtMAC(s.Name))
	}
	for i, sock := range socks {
		if s.Transport == "daemon" {
			a = append(a, fmt.Sprintf("eth%d=daemon,%s,unix,%s", i, macs[i], sock))
		} else {
			a = append(a, fmt.Sprintf("vec%d:transport=bess,dst=%s,mac=%s", i, sock, macs[i]))
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
