package e2e

import (
	"bytes"
	"cloonix/internal/machine"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A guest's console, the VDE wire, and guests booting from a disk or a
// stock UML kernel.

// TestVMConsole: the console shows the guest's shell and takes input;
// Ctrl-] detaches.
func TestVMConsole(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"con1"}, "--type", "uml")
	l.consoleShell("con1", "echo console-$((6*7))-ok", "console-42-ok")
}

// consoleShell attaches `cloonix console` to vm, types line, waits for
// want in what the console shows, then checks Ctrl-] detaches.
func (l *Lab) consoleShell(vm, line, want string) {
	t := l.t
	t.Helper()
	cmd := exec.Command(bin, "-c", l.Config, "console", vm)
	stdin, _ := cmd.StdinPipe()
	var out bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(b) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(stdin, "\n%s\n", line)
	Eventually(t, 20*time.Second, vm+": the console runs a shell", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(out.String(), want) {
			return fmt.Errorf("console so far: %q", lastLines(out.String(), 5))
		}
		return nil
	})
	stdin.Write([]byte{0x1d})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("console after Ctrl-]: %v", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("Ctrl-] did not detach")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestVMVDE: VDE clients plug into lans: vde_plug to a tap in a private
// netns reaches a guest; two plugs exchange 8000-byte frames.
func TestVMVDE(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	if _, err := exec.LookPath("vde_plug"); err != nil {
		t.Fatal("vde_plug missing: install vde2 (scripts/deps.sh)")
	}
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"v1"}, "--type", "uml")
	l.MustRun("ctrl", "attach", "v1:eth0", "lan_v")
	l.vmMust("v1", "ip", "addr", "add", "10.80.0.1/24", "dev", "eth0")
	l.vmMust("v1", "ip", "link", "set", "eth0", "up")
	vdeDir := filepath.Join(l.Dir, "vde", "lan_v")
	Eventually(t, 5*time.Second, "VDE directory of lan_v", func() error {
		_, err := os.Stat(filepath.Join(vdeDir, "ctl"))
		return err
	})
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	ns1, _ := vdePlug(t, vdeDir, suffix, 1)
	_, plug2 := vdePlug(t, vdeDir, suffix, 2)
	lab := l.List()
	vdePorts := 0
	for _, p := range lab.Ports {
		if p.Kind == "vde" && strings.Join(p.Lans, ",") == "lan_v" && p.Connected {
			vdePorts++
		}
	}
	if vdePorts != 2 {
		t.Fatalf("want 2 vde ports on lan_v, list: %+v", lab.Ports)
	}
	if err := vdeNsPing(ns1, "10.80.0.1"); err != nil {
		t.Fatalf("netns behind vde_plug cannot ping the guest: %v", err)
	}
	if !l.canPing("v1", "10.80.0.12") {
		t.Fatal("guest cannot ping the netns behind vde_plug")
	}
	// 8028-byte frames: vde_switch would drop them; this switch passes them.
	if err := vdeNsPing(ns1, "-s", "8000", "10.80.0.12"); err != nil {
		t.Fatalf("jumbo ping between two vde plugs: %v", err)
	}
	// QEMU's own VDE client (libvdeplug) plugs in too: a firmware-only
	// QEMU with -nic vde becomes a third vde port.
	q := exec.Command("qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "pc", "-accel", "tcg",
		"-m", "32", "-nic", "vde,sock="+vdeDir+",model=e1000")
	var qerr bytes.Buffer
	q.Stderr = &qerr
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Process.Kill(); q.Wait() })
	Eventually(t, 10*time.Second, "QEMU -nic vde on lan_v", func() error {
		n := 0
		for _, p := range l.List().Ports {
			if p.Kind == "vde" && p.Connected {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d vde ports (qemu: %s)", n, qerr.String())
		}
		return nil
	})
	q.Process.Kill()
	q.Wait()
	// Unplugging removes the port.
	plug2.Process.Kill()
	Eventually(t, 10*time.Second, "the unplugged VDE port disappears", func() error {
		n := 0
		for _, p := range l.List().Ports {
			if p.Kind == "vde" {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("%d vde ports", n)
		}
		return nil
	})
}

// vdePlug runs vde_plug in a new namespace: a tap there (10.80.0.10+i,
// MTU 9000) joined to the VDE directory vdeDir. It returns the namespace
// and the plug's command.
func vdePlug(t *testing.T, vdeDir, suffix string, i int) (string, *exec.Cmd) {
	ns := fmt.Sprintf("cxv%s_%d", suffix, i)
	tap := fmt.Sprintf("cxt%s%d", suffix, i)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	cmd := exec.Command("ip", "netns", "exec", ns, "vde_plug", "vde://"+vdeDir, "tap://"+tap)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	Eventually(t, 5*time.Second, "tap "+tap+" in "+ns, func() error {
		return exec.Command("ip", "netns", "exec", ns, "ip", "link", "show", tap).Run()
	})
	for _, a := range [][]string{
		{"ip", "link", "set", tap, "mtu", "9000"},
		{"ip", "addr", "add", fmt.Sprintf("10.80.0.%d/24", 10+i), "dev", tap},
		{"ip", "link", "set", tap, "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, a...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", a, err, out)
		}
	}
	return ns, cmd
}

// vdeNsPing pings twice from namespace ns with busybox.
func vdeNsPing(ns string, args ...string) error {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "busybox", "ping", "-c", "2", "-W", "3"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestVMDiskBoot: an image with a partition table's boot signature boots
// from its own disk (no bulk kernel): a boot sector that prints to COM1
// shows on the guest's console.
func TestVMDiskBoot(t *testing.T) {
	needE2E(t)
	const msg = "CLOONIX-DISK-BOOT"
	code := []byte{
		0x31, 0xc0, // xor ax,ax
		0x8e, 0xd8, // mov ds,ax
		0xbe, 0x15, 0x7c, // mov si,0x7c15 (msg)
		0xac,       // lodsb
		0x84, 0xc0, // test al,al
		0x74, 0x06, // jz done
		0xba, 0xf8, 0x03, // mov dx,0x3f8
		0xee,       // out dx,al
		0xeb, 0xf5, // jmp lodsb
		0xf4,       // done: hlt
		0xeb, 0xfd, // jmp done
	}
	img := make([]byte, 1<<20)
	copy(img, code)
	copy(img[len(code):], msg+"\r\n")
	img[510], img[511] = 0x55, 0xaa
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.MustRun("ctrl", "add", "vm", "d1", "--type", "kvm", "--rootfs", p, "--boot-timeout", "600")
	kvmLog, _ := os.ReadFile(filepath.Join(l.Dir, "d1", "kvm.log"))
	if strings.Contains(string(kvmLog), "-kernel") {
		t.Fatalf("a bootable disk was booted with a kernel: %s", kvmLog)
	}
	Eventually(t, 60*time.Second, "the boot sector's message on the console", func() error {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "d1", "console.log"))
		if !strings.Contains(string(b), msg) {
			return fmt.Errorf("console: %q", lastLines(string(b), 3))
		}
		return nil
	})
	if v := vmOf(l.List(), "d1"); v == nil || v.State != "booting" {
		t.Fatalf("d1 listed as %+v", v)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, img) {
		t.Fatal("the disk image changed")
	}
}

// TestVMUMLStockKernel: Debian's own /usr/bin/linux.uml (not bulk's
// copy) runs guests too: on hosts whose XSTATE regset UML cannot restore,
// through the uml-exec seccomp wrapper (docs/machines.md).
func TestVMUMLStockKernel(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"s1"}, "--type", "uml", "--kernel", "/usr/bin/linux.uml")
	if out := strings.TrimSpace(l.vmMust("s1", "sh", "-c", "echo $((6*7))")); out != "42" {
		t.Fatalf("exec gave %q", out)
	}
	b, _ := os.ReadFile(filepath.Join(l.Dir, "s1", "uml.log"))
	first := strings.SplitN(string(b), "\n", 2)[0]
	if machine.NeedXstateWorkaround() != strings.Contains(first, " uml-exec -- /usr/bin/linux.uml ") {
		t.Fatalf("workaround needed: %v, command line: %s", machine.NeedXstateWorkaround(), first)
	}
}
