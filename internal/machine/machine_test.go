package machine

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloonix/internal/hostcpu"
)

func TestMAC(t *testing.T) {
	re := regexp.MustCompile(`^02:c1(:[0-9a-f]{2}){4}$`)
	seen := map[string]bool{}
	for _, vm := range []string{"A", "B", "ROUTER1"} {
		for n := 0; n < 4; n++ {
			m := MAC(vm, n)
			if !re.MatchString(m) {
				t.Fatalf("MAC(%s,%d) = %s", vm, n, m)
			}
			if seen[m] {
				t.Fatalf("MAC(%s,%d) = %s repeats", vm, n, m)
			}
			seen[m] = true
			if MAC(vm, n) != m {
				t.Fatal("MAC not deterministic")
			}
		}
	}
}

func spec(typ string) *Spec {
	return &Spec{
		Name: "A", Type: typ, Mem: 256, CPU: 1,
		Image:     Image{Path: "/bulk/busybox.img", Format: "raw"},
		Kernel:    "/bulk/vmlinuz",
		Initrd:    "/bulk/initrd.img",
		Transport: "bess", Accel: "tcg", Dir: "/w/A",
		EthSocks: []string{"/w/A/eth0.sock", "/w/A/eth1.sock"},
		QEMU:     "qemu-system-x86_64",
	}
}

func TestQEMUArgs(t *testing.T) {
	s := spec(KVM)
	got := strings.Join(QEMUArgs(s, "/w/A/con.sock", "/w/A/agent.sock"), " ")
	for _, want := range []string{
		"-accel tcg -cpu max",
		"-m 256 -smp 1",
		"-drive file=/w/A/root.qcow2,if=virtio,format=qcow2",
		"-drive file=/w/A/cd.iso,if=virtio,format=raw,readonly=on",
		"-kernel /bulk/vmlinuz -initrd /bulk/initrd.img",
		"-append root=/dev/vda rw console=ttyS0 cloonix.name=A cloonix.agent=/dev/ttyS1 cloonix.cd=/dev/vdb net.ifnames=0 init=/sbin/init quiet",
		"-chardev socket,id=con0,path=/w/A/con.sock -serial chardev:con0 -chardev socket,id=agent0,path=/w/A/agent.sock -serial chardev:agent0",
		"-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/w/A/eth0.sock -device virtio-net-pci,netdev=n0,mac=" + MAC("A", 0),
		"-netdev stream,id=n1,server=off,addr.type=unix,addr.path=/w/A/eth1.sock -device virtio-net-pci,netdev=n1,mac=" + MAC("A", 1),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, got)
		}
	}
	s.Accel = "kvm"
	s.Image = Image{Path: "/bulk/disk.qcow2", Format: "qcow2", Disk: true}
	got = strings.Join(QEMUArgs(s, "c", "a"), " ")
	if !strings.Contains(got, "-accel kvm -cpu host") || strings.Contains(got, "-kernel") {
		t.Errorf("disk image under KVM: %s", got)
	}
	s.Dir = "/w/a,b"
	if got := strings.Join(QEMUArgs(s, "c", "a"), " "); !strings.Contains(got, "file=/w/a,,b/root.qcow2,") {
		t.Errorf("comma not escaped: %s", got)
	}
	// On the switch's taps: fds 3, 4, ... in eth order, mgmt0 last.
	s.PortKind, s.EthSocks, s.Mgmt, s.MgmtSock = VTapPortKind, []string{"qv0", "qv1"}, "10.0.0.2/24", "qvm"
	got = strings.Join(QEMUArgs(s, "c", "a"), " ")
	for _, want := range []string{
		"-netdev tap,id=n0,fd=3 -device virtio-net-pci,netdev=n0,mac=" + MAC("A", 0),
		"-netdev tap,id=n1,fd=4 -device virtio-net-pci,netdev=n1,mac=" + MAC("A", 1),
		"-netdev tap,id=mgmt0,fd=5 -device virtio-net-pci,netdev=mgmt0,mac=" + MgmtMAC("A"),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("QEMU args on taps lack %q:\n%s", want, got)
		}
	}
}

func TestUMLArgs(t *testing.T) {
	s := spec(UML)
	got := strings.Join(UMLArgs(s, 3, 4), " ")
	for _, want := range []string{
		"mem=256M",
		"ubd0=/w/A/root.cow,/bulk/busybox.img ubd1r=/w/A/cd.iso",
		"con=null ssl=null con0=fd:3,fd:3 ssl1=fd:4,fd:4",
		"vec0:transport=bess,dst=/w/A/eth0.sock,mac=" + MAC("A", 0),
		"vec1:transport=bess,dst=/w/A/eth1.sock,mac=" + MAC("A", 1),
		"root=/dev/ubda rw cloonix.name=A cloonix.agent=/dev/ttyS1 cloonix.cd=/dev/ubdb net.ifnames=0 init=/sbin/init",
		"initcall_blacklist=raid6_select_algo,calibrate_xor_blocks",
		"pty.legacy_count=0",
		"sysctl.vm.overcommit_memory=1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("UML args lack %q:\n%s", want, got)
		}
	}
	s.Transport = "daemon"
	s.EthSocks = []string{"/w/A/eth0.ctl"}
	got = strings.Join(UMLArgs(s, 3, 4), " ")
	if !strings.Contains(got, "eth0=daemon,"+MAC("A", 0)+",unix,/w/A/eth0.ctl") || strings.Contains(got, "vec") {
		t.Errorf("daemon transport: %s", got)
	}
}

func TestResolveImage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fs.img"), make([]byte, 4096), 0o644)
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	os.WriteFile(filepath.Join(dir, "disk.img"), mbr, 0o644)
	os.WriteFile(filepath.Join(dir, "cloud.qcow2"), []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)
	cases := []struct {
		name, format string
		disk, err    bool
	}{
		{"fs", "raw", false, false},
		{"fs.img", "raw", false, false},
		{"disk", "raw", true, false},
		{"cloud", "qcow2", true, false},
		{filepath.Join(dir, "fs.img"), "raw", false, false},
		{"nope", "", false, true},
		{"../etc/passwd", "", false, true},
		{"rel/x.img", "", false, true},
	}
	for _, c := range cases {
		img, err := ResolveImage(dir, c.name)
		if (err != nil) != c.err || err == nil && (img.Format != c.format || img.Disk != c.disk) {
			t.Errorf("%s: %+v %v", c.name, img, err)
		}
	}
	_, err := ResolveImage(dir, "nope")
	if err == nil || !strings.Contains(err.Error(), "cloud, disk, fs") {
		t.Errorf("unknown image error does not list images: %v", err)
	}
}

func TestCreateOverlay(t *testing.T) {
	qi, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (Debian package qemu-utils)")
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	os.WriteFile(base, make([]byte, 1<<20), 0o444)
	ov := filepath.Join(dir, "ov.qcow2")
	if err := CreateOverlay(qi, Image{Path: base, Format: "raw"}, ov); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(qi, "info", ov).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backing file: "+base) {
		t.Fatalf("overlay info: %v %s", err, out)
	}
}

func TestProbeKVM(t *testing.T) {
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	t0 := time.Now()
	ok, why := ProbeKVM(q, "", t.TempDir())
	t.Logf("firmware probe: KVM usable: %v (%v) in %v", ok, why, time.Since(t0))
	if k := ProbeKernel("/nonexistent"); k != "" {
		t0 = time.Now()
		ok, why = ProbeKVM(q, k, t.TempDir())
		t.Logf("kernel probe (%s): KVM usable: %v (%v) in %v", k, ok, why, time.Since(t0))
		if !ok && time.Since(t0) < time.Second {
			t.Logf("probe failed fast: %v", why)
		}
	}
	t.Logf("KVM usable: %v (%v) in %v", ok, why, time.Since(t0))
	if time.Since(t0) > ProbeTimeout+3*time.Second {
		t.Fatal("probe overran its timeout")
	}
	// With TCG the same firmware must exit at once: proves the probe
	// firmware itself is right, so a false above is KVM's fault.
	out, err := exec.Command(q, "-nodefaults", "-display", "none", "-machine", "pc", "-accel", "tcg", "-m", "16",
		"-bios", writeBIOS(t), "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("probe firmware under TCG: %v %s", err, out)
	}
}

func writeBIOS(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "bios.bin")
	os.WriteFile(p, probeBIOS(), 0o644)
	return p
}

func TestLookProgramNamesPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for prog, pkg := range map[string]string{"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils"} {
		_, err := LookProgram(prog)
		if err == nil || !strings.Contains(err.Error(), pkg) {
			t.Errorf("%s missing: %v (want the package %s named)", prog, err, pkg)
		}
	}
}

func TestXstateFilter(t *testing.T) {
	f := xstateFilter()
	// Every jump must land inside the program, on a return eventually.
	for i, ins := range f {
		if ins.code == bpfJeqK && (i+1+int(ins.jt) >= len(f) || i+1+int(ins.jf) >= len(f)) {
			t.Fatalf("instruction %d jumps out of the program", i)
		}
	}
	// Interpret it on a few calls.
	run := func(nr, arch uint32, a0, a2 uint32) uint32 {
		data := map[uint32]uint32{0: nr, 4: arch, 16: a0, 32: a2}
		var acc uint32
		for pc := 0; pc < len(f); pc++ {
			ins := f[pc]
			switch ins.code {
			case bpfLdWAbs:
				acc = data[ins.k]
			case bpfJeqK:
				if acc == ins.k {
					pc += int(ins.jt)
				} else {
					pc += int(ins.jf)
				}
			case bpfRetK:
				return ins.k
			}
		}
		t.Fatal("fell off the program")
		return 0
	}
	deny := uint32(seccompRetErrno | 5)
	cases := []struct {
		nr, arch, a0, a2, want uint32
	}{
		{sysPtrace, auditArchX8664, ptraceGetRegset, ntX86Xstate, deny},
		{sysPtrace, auditArchX8664, ptraceSetRegset, ntX86Xstate, deny},
		{sysPtrace, auditArchX8664, ptraceGetRegset, 1, seccompRetAllow}, // NT_PRSTATUS
		{sysPtrace, auditArchX8664, 12, ntX86Xstate, seccompRetAllow},    // PTRACE_GETREGS
		{0, auditArchX8664, ptraceGetRegset, ntX86Xstate, seccompRetAllow},
		{sysPtrace, 0x40000003, ptraceGetRegset, ntX86Xstate, seccompRetAllow},
	}
	for _, c := range cases {
		if got := run(c.nr, c.arch, c.a0, c.a2); got != c.want {
			t.Errorf("%+v: got %#x", c, got)
		}
	}
}

func TestPVHKernel(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	// A "bzImage" whose gzip payload is an ELF without a PVH note: kept.
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(append([]byte("\x7fELF"), make([]byte, 100)...))
	zw.Close()
	fake := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(fake, append(make([]byte, 512), z.Bytes()...), 0o644)
	if k, err := PVHKernel(fake); k != fake || err == nil {
		t.Fatalf("kernel without PVH note: %s %v", k, err)
	}
	k := ProbeKernel("/nonexistent")
	if k == "" {
		t.Skip("no Debian kernel in /boot to unpack (package linux-image-amd64)")
	}
	t0 := time.Now()
	out, err := PVHKernel(k)
	if err != nil || out == k {
		t.Fatalf("unpacking %s: %s %v", k, out, err)
	}
	b, _ := os.ReadFile(out)
	if !hasPVHNote(b) {
		t.Fatal("unpacked kernel has no PVH note")
	}
	t.Logf("unpacked %s (%d MB) in %v", k, len(b)>>20, time.Since(t0))
	// Cached: the second call is immediate and gives the same file.
	if again, err := PVHKernel(k); err != nil || again != out {
		t.Fatalf("second call: %s %v", again, err)
	}
}

func TestHostXstateSize(t *testing.T) {
	n, err := hostcpu.XstateSize()
	if err != nil {
		t.Skipf("ptrace not permitted here: %v", err)
	}
	if n < 512 || n > 1<<16 {
		t.Fatalf("host xstate %d bytes", n)
	}
	t.Logf("host XSTATE regset: %d bytes; UML workaround: %v", n, NeedXstateWorkaround())
}

// TestAwaitAgent: a guest whose agent never answers (a stock cloud image)
// is an error after the wait, not a hang; one that starts running or
// stops in time is not waited for longer.
func TestAwaitAgent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		to    string // state set after 10 ms; "" leaves it booting
		isErr bool
	}{
		{"no agent", "", true},
		{"agent answers", Running, false},
		{"guest stops", Stopped, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Machine{Spec: Spec{Name: "CI1"}}
			if tc.to != "" {
				time.AfterFunc(10*time.Millisecond, func() { m.setState(tc.to, "") })
			}
			t0 := time.Now()
			err := m.AwaitAgent(context.Background(), 2*time.Second)
			if (err != nil) != tc.isErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil && (!errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "cloonix console CI1")) {
				t.Fatalf("err = %v", err)
			}
			if !tc.isErr && time.Since(t0) > time.Second {
				t.Fatalf("waited %v though the guest settled after 10 ms", time.Since(t0))
			}
		})
	}
}
