package machine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkEnv is a bulk dir with a filesystem image, a disk image, a QEMU
// kernel and its initrd, and a work dir.
func checkEnv(t *testing.T) Host {
	t.Helper()
	bulk := t.TempDir()
	for name, b := range map[string][]byte{
		"busybox.img": make([]byte, 4096),
		"vmlinuz":     []byte("kernel"),
		"initrd.img":  []byte("initrd"),
		"other":       []byte("kernel"),
	} {
		if err := os.WriteFile(filepath.Join(bulk, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	if err := os.WriteFile(filepath.Join(bulk, "disk.img"), mbr, 0o644); err != nil {
		t.Fatal(err)
	}
	return Host{BulkDir: bulk, WorkDir: "/w", Accel: "tcg"}
}

func newSpec(h Host, name string) *Spec {
	return &Spec{Name: name, Host: h, Mem: Unset, CPU: Unset, Eths: Unset}
}

func TestKindCheck(t *testing.T) {
	h := checkEnv(t)
	_, qemuErr := exec.LookPath("qemu-system-x86_64")
	_, imgErr := exec.LookPath("qemu-img")
	haveQEMU := qemuErr == nil && imgErr == nil
	_, umlErr := LookProgram("linux.uml")
	haveUML := umlErr == nil
	long := strings.Repeat("x", 100)
	cases := []struct {
		kind Kind
		name string
		set  func(s *Spec)
		want string // "" means valid
	}{
		{UMLKind{}, "defaults", func(s *Spec) {}, ""},
		{UMLKind{}, "small mem", func(s *Spec) { s.Mem = 4 }, "out of range"},
		{UMLKind{}, "huge mem", func(s *Spec) { s.Mem = 99999999 }, "out of range"},
		{UMLKind{}, "negative mem", func(s *Spec) { s.Mem = -1 }, "out of range"},
		{UMLKind{}, "two CPUs", func(s *Spec) { s.CPU = 2 }, "one CPU"},
		{UMLKind{}, "too many eths", func(s *Spec) { s.Eths = 99 }, "eth"},
		{UMLKind{}, "negative eths", func(s *Spec) { s.Eths = -1 }, "eth"},
		{UMLKind{}, "unknown rootfs", func(s *Spec) { s.Rootfs = "nosuchimage" }, "busybox"},
		{UMLKind{}, "rootfs escapes", func(s *Spec) { s.Rootfs = "../../etc/passwd" }, "rootfs"},
		{UMLKind{}, "disk image", func(s *Spec) { s.Rootfs = "disk" }, "bootable disk"},
		{UMLKind{}, "bad transport", func(s *Spec) { s.Transport = "tap" }, "bess or daemon"},
		{UMLKind{}, "missing kernel", func(s *Spec) { s.KernelArg = "/no/such/kernel" }, "not found"},
		{UMLKind{}, "relative kernel", func(s *Spec) { s.KernelArg = "a/b" }, "absolute path"},
		{UMLKind{}, "long work_dir", func(s *Spec) { s.Host.WorkDir = "/" + long }, "108-byte"},
		{UMLKind{}, "daemon transport", func(s *Spec) { s.Transport = "DAEMON" }, ""},
		{QEMUKind{}, "defaults", func(s *Spec) {}, ""},
		{QEMUKind{}, "small mem", func(s *Spec) { s.Mem = 4 }, "out of range"},
		{QEMUKind{}, "too many CPUs", func(s *Spec) { s.CPU = 65 }, "--cpu from 1 to 64"},
		{QEMUKind{}, "too many eths", func(s *Spec) { s.Eths = 33 }, "eth"},
		{QEMUKind{}, "transport", func(s *Spec) { s.Transport = "bess" }, "UML guests only"},
		{QEMUKind{}, "unknown rootfs", func(s *Spec) { s.Rootfs = "nosuchimage" }, "busybox"},
		{QEMUKind{}, "missing kernel", func(s *Spec) { s.KernelArg = "/no/such/kernel" }, "not found"},
		{QEMUKind{}, "kernel name with ..", func(s *Spec) { s.KernelArg = ".." }, "kernel"},
		{QEMUKind{}, "other kernel", func(s *Spec) { s.KernelArg = "other" }, ""},
		{QEMUKind{}, "disk image", func(s *Spec) { s.Rootfs = "disk" }, ""},
	}
	for _, c := range cases {
		t.Run(c.kind.Name()+"/"+c.name, func(t *testing.T) {
			if _, ok := c.kind.(QEMUKind); ok && !haveQEMU && c.want == "" {
				t.Skip("QEMU is not installed")
			}
			if _, ok := c.kind.(UMLKind); ok && !haveUML && c.want == "" {
				t.Skip("linux.uml is not installed")
			}
			s := newSpec(h, "A")
			c.set(s)
			err := c.kind.Check(s)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check: %v, want an error with %q", err, c.want)
			}
			if !strings.Contains(err.Error(), "A") {
				t.Errorf("error does not name the vm: %v", err)
			}
		})
	}
}

// TestKindCheckFills: a checked spec has the kind's defaults and what
// the switch must offer for each eth.
func TestKindCheckFills(t *testing.T) {
	h := checkEnv(t)
	if _, err := LookProgram("linux.uml"); err == nil {
		s := newSpec(h, "U")
		s.Transport = "daemon"
		s.Eths = 2
		if err := (UMLKind{}).Check(s); err != nil {
			t.Fatal(err)
		}
		want := []Port{{"daemon", "/w/U/eth0.ctl"}, {"daemon", "/w/U/eth1.ctl"}}
		if got := s.Ports(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("UML ports %+v, want %+v", got, want)
		}
		if s.Type != UML || s.Mem != 256 || s.CPU != 1 || s.Dir != "/w/U" || s.CD.Name != "U" || s.CD.Eths != 2 || s.Image.Name != "busybox" {
			t.Errorf("UML defaults: %+v", s)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		defer func(f func() bool) { vtapUsable = f }(vtapUsable)
		vtapUsable = func() bool { return true }
		s := newSpec(h, "Q")
		if err := (QEMUKind{}).Check(s); err != nil {
			t.Fatal(err)
		}
		if got := s.Ports(); len(got) != 1 || got[0] != (Port{"vtap", vtapName("/w/Q/eth0.sock")}) || s.MgmtSock != vtapName("/w/Q/mgmt0.sock") {
			t.Errorf("QEMU ports on taps %+v, mgmt0 %q", got, s.MgmtSock)
		}
		vtapUsable = func() bool { return false }
		s = newSpec(h, "Q")
		if err := (QEMUKind{}).Check(s); err != nil {
			t.Fatal(err)
		}
		if got := s.Ports(); len(got) != 1 || got[0] != (Port{"stream", "/w/Q/eth0.sock"}) {
			t.Errorf("QEMU ports without taps %+v", got)
		}
		if s.Kernel != filepath.Join(h.BulkDir, "vmlinuz") || s.Initrd != filepath.Join(h.BulkDir, "initrd.img") {
			t.Errorf("QEMU kernel %q initrd %q: want the bulk kernel and its initrd", s.Kernel, s.Initrd)
		}
		s = newSpec(h, "Q")
		s.KernelArg, s.Eths = "other", 0
		if err := (QEMUKind{}).Check(s); err != nil || s.Initrd != "" || len(s.Ports()) != 0 {
			t.Errorf("other kernel: initrd %q ports %v err %v (the bulk initrd goes with the bulk kernel only)", s.Initrd, s.Ports(), err)
		}
	}
}

func TestRegistryLookup(t *testing.T) {
	r := NewRegistry(QEMUKind{}, UMLKind{})
	for typ, want := range map[string]string{"": KVM, "kvm": KVM, "QEMU": KVM, " uml ": UML} {
		k, err := r.Lookup(typ)
		if err != nil || k.Name() != want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", typ, k, err, want)
		}
	}
	if _, err := r.Lookup("xen"); err == nil || !strings.Contains(err.Error(), "use kvm or uml") {
		t.Errorf("Lookup(xen): %v", err)
	}
	only := NewRegistry(UMLKind{})
	if k, err := only.Lookup(""); err != nil || k.Name() != UML {
		t.Errorf("a registry of UML only defaults to %v, %v", k, err)
	}
	if _, err := only.Lookup("kvm"); err == nil || !strings.Contains(err.Error(), "use uml") {
		t.Errorf("a registry of UML only knows kvm: %v", err)
	}
}
