package machine

import (
	"fmt"
	"log"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// QEMUKind runs a QEMU guest, under KVM when it works (accel.go), TCG
// otherwise: a bootable disk, or a filesystem image with the bulk kernel.
type QEMUKind struct{}

// Name is the add_vm type.
func (QEMUKind) Name() string { return KVM }

// Aliases are the other add_vm types meaning QEMU.
func (QEMUKind) Aliases() []string { return []string{"qemu"} }

// Check validates a QEMU spec and picks QEMU, qemu-img, the kernel and
// initrd of a bare filesystem image.
func (QEMUKind) Check(s *Spec) (err error) {
	s.Type = KVM
	if s.Transport != "" {
		return fmt.Errorf("vm %s: --uml-transport is for UML guests only", s.Name)
	}
	if err := CheckBasics(s, 256, MaxCPU); err != nil {
		return err
	}
	if err := resolveRootfs(s); err != nil {
		return err
	}
	if s.QEMU, err = LookProgram("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	if s.QemuImg, err = LookProgram("qemu-img"); err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	if !s.Image.Disk {
		kernel := s.KernelArg
		if kernel == "" {
			kernel = "vmlinuz"
		}
		if s.Kernel, err = kernelPath(s.Host.BulkDir, kernel); err != nil {
			return fmt.Errorf("vm %s: %v (a bare filesystem image boots with the bulk kernel: `cloonix bulk build`)", s.Name, err)
		}
		// The bulk kernel's initrd loads the disk modules.
		if ini := filepath.Join(filepath.Dir(s.Kernel), "initrd.img"); filepath.Base(s.Kernel) == "vmlinuz" && fileExists(ini) {
			s.Initrd = ini
		}
	}
	s.PortKind = StreamPortKind
	s.EthSocks = EthSockets(s, ".sock")
	s.MgmtSock = MgmtSocket(s, ".sock")
	if vtapUsable() { // qemu_tap.go
		s.PortKind = VTapPortKind
		for i, p := range s.EthSocks {
			s.EthSocks[i] = vtapName(p)
		}
		s.MgmtSock = vtapName(s.MgmtSock)
	}
	return nil
}

// Start picks the accelerator (probing KVM once), makes the COW disk and
// launches QEMU.
func (QEMUKind) Start(s Spec, ev Events) (Guest, error) {
	var err error
	if s.Accel, err = ResolveAccel(s.Host.Accel, s.QEMU, ProbeKernel(s.Host.BulkDir), s.Host.WorkDir); err != nil {
		return nil, err
	}
	if !s.KeepDisk || !fileExists(s.OverlayPath()) {
		if err := CreateOverlay(s.QemuImg, s.Image, s.OverlayPath()); err != nil {
			return nil, err
		}
	}
	if !s.Image.Disk && s.Kernel != "" {
		k, err := PVHKernel(s.Kernel)
		if err != nil {
			log.Printf("vm %s: booting %s as it is (%v)", s.Name, s.Kernel, err)
		}
		s.Kernel = k
	}
	m, err := startProcess(s, ev, qemuPlumbing)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// qemuPlumbing: QEMU connects its two serial lines to our sockets at
// start.
func qemuPlumbing(m *Machine) (*plumbing, error) {
	var l [2]*net.UnixListener
	for i, name := range []string{"con.sock", "agent.sock"} {
		var err error
		if l[i], err = listenUnix(m.path(name)); err != nil {
			return nil, err
		}
		m.closers = append(m.closers, l[i])
	}
	p := &plumbing{args: QEMUArgs(&m.Spec, m.path("con.sock"), m.path("agent.sock"))}
	if m.PortKind == VTapPortKind {
		// The taps' descriptors, in QEMUArgs' order: fd 3, 4, ...
		names := append([]string(nil), m.EthSocks...)
		if mp, ok := m.MgmtPort(); ok {
			names = append(names, mp.Path)
		}
		for _, n := range names {
			f, err := VTapFile(n)
			if err != nil {
				return p, err // launch closes the ones made
			}
			p.extra = append(p.extra, f)
		}
	}
	m.qmpSock = m.QMPPath()
	// quit makes QEMU flush its disk (qcow2 metadata) before exiting.
	m.hardStop = func() { _ = m.qmp("quit", nil) }
	p.connect = func() {
		go func() {
			if c, err := acceptOne(m.ctx, l[0], m.pid); err == nil {
				m.console.Attach(c)
			}
		}()
		go func() {
			if c, err := acceptOne(m.ctx, l[1], m.pid); err == nil {
				m.setAgent(c)
			}
		}()
	}
	return p, nil
}

// KernelCmdline is the guest kernel command line (the contract with the
// agent and the images): cdDev is where the config CD appears.
func KernelCmdline(s *Spec, root, console, cdDev string) string {
	parts := []string{"root=" + root, "rw"}
	if console != "" {
		parts = append(parts, "console="+console)
	}
	parts = append(parts,
		"cloonix.name="+s.Name,
		"cloonix.agent=/dev/ttyS1",
		"cloonix.cd="+cdDev,
		"net.ifnames=0",
		"init=/sbin/init",
	)
	return strings.Join(parts, " ")
}

// QEMUArgs is the QEMU command line for s. The two serial lines connect
// to our unix sockets: ttyS0 the console, ttyS1 the agent line. Each eth
// is a virtio NIC whose MAC is derived from the VM name, on the switch's
// tap (fds 3, 4, ... in eth order, mgmt0 last) or stream socket.
func QEMUArgs(s *Spec, conSock, agentSock string) []string {
	a := []string{s.QEMU,
		"-name", s.Name,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc",
		"-m", strconv.Itoa(s.Mem),
		"-smp", strconv.Itoa(s.CPU),
	}
	if s.Accel == "kvm" {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		// max gives the guest RDRAND, so its CRNG is ready at once (Go
		// programs such as the agent block in getrandom until it is).
		a = append(a, "-accel", "tcg", "-cpu", "max")
	}
	// cache=writeback: the overlay outlives the guest (ctrl stop/start,
	// resume after a crash of the switch), so a guest's sync must reach
	// the host with qcow2's metadata. The reference image is opened
	// read-only with no lock: UML guests hold a whole-file read lock on
	// it, which QEMU's byte-range image locking takes for a conflict.
	a = append(a, "-drive", fmt.Sprintf("file=%s,if=virtio,format=qcow2,cache=writeback,discard=unmap,backing.file.locking=off", qemuEscape(s.OverlayPath())))
	a = append(a, "-drive", fmt.Sprintf("file=%s,if=virtio,format=raw,readonly=on", qemuEscape(s.CDPath())))
	if !s.Image.Disk {
		a = append(a, "-kernel", s.Kernel)
		if s.Initrd != "" {
			a = append(a, "-initrd", s.Initrd)
		}
		// quiet: under TCG every byte printk writes to the emulated UART
		// costs; errors still show on the console.
		a = append(a, "-append", KernelCmdline(s, "/dev/vda", "ttyS0", "/dev/vdb")+" quiet")
	}
	a = append(a,
		"-chardev", "socket,id=con0,path="+qemuEscape(conSock),
		"-serial", "chardev:con0",
		"-chardev", "socket,id=agent0,path="+qemuEscape(agentSock),
		"-serial", "chardev:agent0",
		// QMP: carrier (set_link), pause for snapshots, clean quit.
		"-qmp", "unix:"+qemuEscape(s.QMPPath())+",server=on,wait=off",
	)
	for i, sock := range s.EthSocks {
		a = append(a,
			"-netdev", qemuNetdev(s, fmt.Sprintf("n%d", i), sock, 3+i),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s,id=nic%d", i, MAC(s.Name, i), i),
		)
	}
	if p, ok := s.MgmtPort(); ok { // after the eths: their PCI slots stay
		a = append(a,
			"-netdev", qemuNetdev(s, "mgmt0", p.Path, 3+len(s.EthSocks)),
			"-device", "virtio-net-pci,netdev=mgmt0,mac="+MgmtMAC(s.Name),
		)
	}
	return a
}

// qemuNetdev is the -netdev of one eth: the tap QEMU finds at fd (the
// switch made it, qemu_tap.go) with its virtio-net header, or a stream
// socket to the switch's port at path.
func qemuNetdev(s *Spec, id, path string, fd int) string {
	if s.PortKind == VTapPortKind {
		return fmt.Sprintf("tap,id=%s,fd=%d", id, fd) // QEMU finds the tap's virtio-net header itself
	}
	return fmt.Sprintf("stream,id=%s,server=off,addr.type=unix,addr.path=%s", id, qemuEscape(path))
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
