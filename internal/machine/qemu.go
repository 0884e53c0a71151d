package machine

import (
	"fmt"
	"strconv"
	"strings"
)

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
// is `-netdev stream` to its switch socket with a virtio NIC whose MAC is
// derived from the VM name.
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
	// cache=unsafe: the overlay is thrown away with the VM, so flushes
	// to the host disk only cost time. The reference image is opened
	// read-only with no lock: UML guests hold a whole-file read lock on
	// it, which QEMU's byte-range image locking takes for a conflict.
	a = append(a, "-drive", fmt.Sprintf("file=%s,if=virtio,format=qcow2,cache=unsafe,discard=unmap,backing.file.locking=off", qemuEscape(s.OverlayPath())))
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
	)
	for i, sock := range s.EthSocks {
		a = append(a,
			"-netdev", fmt.Sprintf("stream,id=n%d,server=off,addr.type=unix,addr.path=%s", i, qemuEscape(sock)),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s", i, MAC(s.Name, i)),
		)
	}
	return a
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
