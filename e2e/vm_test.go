package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/machine"
	"cloonix/internal/proto"
)

// Machines (issue 4): real guests from the bulk images, UML first (it
// boots in seconds) then QEMU under TCG.

// needImages fails (never skips) when the bulk images are missing.
func needImages(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(bulkDir, n)); err != nil {
			t.Fatalf("%s missing in %s: run `make images` (cloonix bulk build) first", n, bulkDir)
		}
	}
}

// vmRun runs `cloonix exec VM -- args` and returns stdout, stderr and the
// exit code.
func (l *Lab) vmRun(vm string, args ...string) (string, string, int) {
	l.t.Helper()
	cmd := exec.Command(bin, append([]string{"-c", l.Config, "exec", vm, "--"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			l.t.Fatalf("exec %s %v: %v", vm, args, err)
		}
		return out.String(), errb.String(), code
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		l.t.Fatalf("exec %s %v: no answer in 3 minutes", vm, args)
	}
	return "", "", -1
}

func (l *Lab) vmMust(vm string, args ...string) string {
	l.t.Helper()
	out, errs, code := l.vmRun(vm, args...)
	if code != 0 {
		l.t.Fatalf("exec %s %v: exit %d\nstdout: %s\nstderr: %s", vm, args, code, out, errs)
	}
	return out
}

// httpFetch serves 4 MiB of random bytes from guest src with busybox
// httpd and fetches them from guest dst at addr: a TCP transfer through
// the switch whose bytes arrive intact.
func (l *Lab) httpFetch(src, addr, dst string) {
	l.t.Helper()
	l.vmMust(src, "sh", "-c", "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/d bs=1M count=4 2>/dev/null && httpd -p 8080 -h /tmp/www")
	sum := strings.Fields(l.vmMust(src, "md5sum", "/tmp/www/d"))[0]
	out, errs, code := l.vmRun(dst, "sh", "-c", "wget -q -O - http://"+addr+":8080/d | md5sum")
	if code != 0 || !strings.HasPrefix(out, sum) {
		l.t.Fatalf("%s fetching 4 MiB from %s: %q %q (exit %d), want md5 %s", dst, src, out, errs, code, sum)
	}
}

// meanFrame is the larger of port p's mean frame sizes in and out.
func (l *Lab) meanFrame(p string) uint64 {
	l.t.Helper()
	for _, q := range l.List().Ports {
		if q.Name == p {
			c := q.Counters
			return max(c.RxBytes/max(c.RxFrames, 1), c.TxBytes/max(c.TxFrames, 1))
		}
	}
	l.t.Fatalf("no port %s in the list", p)
	return 0
}

// addVMs adds guests in parallel and waits until each runs.
func (l *Lab) addVMs(names []string, args ...string) {
	l.t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := l.RunTimeout(6*time.Minute, append([]string{"ctrl", "add", "vm", n, "--wait"}, args...)...)
			if err != nil {
				errs[i] = fmt.Sprintf("add vm %s: %v\n%s", n, err, out)
				if b, err := os.ReadFile(filepath.Join(l.Dir, n, "console.log")); err == nil {
					errs[i] += "\nconsole.log:\n" + lastLines(string(b), 40)
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			l.t.Fatal(e)
		}
	}
}

// canPing tells whether vm reaches addr (a few tries: ARP may need one).
func (l *Lab) canPing(vm, addr string) bool {
	l.t.Helper()
	_, _, code := l.vmRun(vm, "ping", "-c", "2", "-W", "2", addr)
	return code == 0
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// bulkSums records the sums of the bulk images.
func bulkSums(t *testing.T) map[string]string {
	t.Helper()
	sums := map[string]string{}
	m, _ := filepath.Glob(filepath.Join(bulkDir, "*.img"))
	for _, p := range m {
		sums[p] = sha256File(t, p)
	}
	return sums
}

func vmOf(lab *proto.Lab, name string) *proto.VM {
	for i := range lab.VMs {
		if lab.VMs[i].Name == name {
			return &lab.VMs[i]
		}
	}
	return nil
}

// lanExample is the seed's lan example with real guests: A and B on
// lan_one, B and C on lan_two; A reaches B, B reaches C, A does not reach
// C until A:eth0 is also put on lan_two (at once, no reboot). Guests write
// files; the bulk images' sums do not change.
func lanExample(t *testing.T, typ string, args ...string) {
	needImages(t, "busybox.img")
	before := bulkSums(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	names := []string{"A", "B", "C"}
	l.addVMs(names, append([]string{"--type", typ}, args...)...)
	lab := l.List()
	for _, n := range names {
		v := vmOf(lab, n)
		if v == nil || v.State != "running" || v.Pid <= 0 || v.Type != typ || len(v.Eths) != 1 || v.Eths[0].Port != n+":eth0" {
			t.Fatalf("list shows %s as %+v", n, v)
		}
		if typ == "kvm" && v.Accel != "tcg" && v.Accel != "kvm" {
			t.Fatalf("%s: accel %q", n, v.Accel)
		}
	}
	l.MustRun("ctrl", "attach", "A:eth0", "lan_one")
	l.MustRun("ctrl", "attach", "B:eth0", "lan_one")
	l.MustRun("ctrl", "attach", "B:eth0", "lan_two")
	l.MustRun("ctrl", "attach", "C:eth0", "lan_two")
	for i, n := range names {
		l.vmMust(n, "ip", "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", "eth0")
		l.vmMust(n, "ip", "link", "set", "eth0", "up")
		// Every guest writes into its root: the COW takes it.
		l.vmMust(n, "sh", "-c", "dd if=/dev/urandom of=/root/junk bs=64k count=16 2>/dev/null && echo "+n+" > /etc/written && sync")
	}
	if !l.canPing("A", "10.77.0.2") {
		t.Fatal("A cannot ping B (both on lan_one)")
	}
	if !l.canPing("B", "10.77.0.3") {
		t.Fatal("B cannot ping C (both on lan_two)")
	}
	if l.canPing("A", "10.77.0.3") {
		t.Fatal("A pings C though they share no lan")
	}
	l.MustRun("ctrl", "attach", "A:eth0", "lan_two")
	if !l.canPing("A", "10.77.0.3") {
		t.Fatal("A cannot ping C right after A:eth0 joined lan_two")
	}
	lab = l.List()
	if v := vmOf(lab, "A"); v == nil || strings.Join(v.Eths[0].Lans, ",") != "lan_one,lan_two" {
		t.Fatalf("list shows A as %+v", v)
	}
	l.httpFetch("B", "10.77.0.2", "A")
	if m := l.meanFrame("B:eth0"); typ == "kvm" && m <= 1514 {
		// QEMU's eths are taps with a virtio-net header: the guests'
		// TCP segments cross the switch whole (machine/qemu_tap.go).
		t.Fatalf("B:eth0's frames average %d bytes: the QEMU guests' TCP super frames did not cross whole", m)
	}
	if got := strings.TrimSpace(l.vmMust("C", "cat", "/etc/written")); got != "C" {
		t.Fatalf("C's file reads %q", got)
	}
	pids := map[string]int{}
	for _, n := range names {
		pids[n] = vmOf(lab, n).Pid
	}
	// `cloonix stop` stops every guest.
	l.MustRun("stop")
	for n, pid := range pids {
		Eventually(t, 20*time.Second, "guest "+n+" gone after stop", func() error {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("pid %d still alive", pid)
			}
			return nil
		})
	}
	after := bulkSums(t)
	for p, s := range before {
		if after[p] != s {
			t.Fatalf("bulk image %s changed: %s -> %s", p, s, after[p])
		}
	}
}

func TestVMLanUML(t *testing.T) {
	needE2E(t)
	lanExample(t, "uml")
}

func TestVMLanUMLDaemon(t *testing.T) {
	needE2E(t)
	lanExample(t, "uml", "--uml-transport", "daemon")
}

func TestVMLanQEMU(t *testing.T) {
	needE2E(t)
	needImages(t, "vmlinuz", "initrd.img")
	lanExample(t, "kvm")
}

// TestVMMixed: a UML guest (bess), a UML guest (daemon transport) and a
// QEMU guest on one lan reach each other; exec keeps outputs and codes.
func TestVMMixed(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img", "vmlinuz", "initrd.img")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"u1"}, "--type", "uml", "--eth", "3")
	l.addVMs([]string{"u2"}, "--type", "uml", "--uml-transport", "daemon", "--eth", "2")
	l.addVMs([]string{"q1"}, "--type", "kvm", "--eth", "3")
	// Inside every guest the eths are eth0, eth1, ... in order, whatever
	// the transport, with the switch's deterministic MACs.
	for _, g := range []struct {
		vm string
		n  int
	}{{"u1", 3}, {"u2", 2}, {"q1", 3}} {
		for i := 0; i < g.n; i++ {
			got := strings.TrimSpace(l.vmMust(g.vm, "cat", fmt.Sprintf("/sys/class/net/eth%d/address", i)))
			if want := machine.MAC(g.vm, i); got != want {
				t.Fatalf("%s eth%d has MAC %s, want %s", g.vm, i, got, want)
			}
		}
	}
	for i, n := range []string{"u1", "u2", "q1"} {
		l.MustRun("ctrl", "attach", n+":eth0", "mixed")
		l.vmMust(n, "ip", "addr", "add", fmt.Sprintf("10.78.0.%d/24", i+1), "dev", "eth0")
		l.vmMust(n, "ip", "link", "set", "eth0", "up")
	}
	for _, p := range [][2]string{{"u1", "10.78.0.3"}, {"q1", "10.78.0.1"}, {"q1", "10.78.0.2"}, {"u2", "10.78.0.1"}} {
		if !l.canPing(p[0], p[1]) {
			t.Fatalf("%s cannot ping %s on the shared lan", p[0], p[1])
		}
	}
	// TCP both ways between QEMU (super frames, cut here for UML) and UML.
	l.httpFetch("q1", "10.78.0.3", "u1")
	l.httpFetch("u1", "10.78.0.1", "q1")
	for _, n := range []string{"u1", "q1"} {
		out, errs, code := l.vmRun(n, "sh", "-c", "echo out; echo err >&2; exit 7")
		if out != "out\n" || errs != "err\n" || code != 7 {
			t.Fatalf("%s: exec gave %q %q %d", n, out, errs, code)
		}
		if _, _, code := l.vmRun(n, "false"); code != 1 {
			t.Fatalf("%s: exec false exited %d", n, code)
		}
		if out, _, code := l.vmRun(n, "hostname"); code != 0 || strings.TrimSpace(out) != n {
			t.Fatalf("%s: hostname %q (%d)", n, out, code)
		}
	}
	if _, errs, code := l.vmRun("u1", "/no/such/program"); code != 127 {
		t.Fatalf("missing program: exit %d (%s), want 127", code, errs)
	}
	// stdin goes through with -i.
	cmd := exec.Command(bin, "-c", l.Config, "exec", "-i", "u1", "--", "wc", "-c")
	cmd.Stdin = strings.NewReader(strings.Repeat("x", 100000))
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "100000" {
		t.Fatalf("exec -i: %q %v", out, err)
	}
}

// TestVMCrash: kill -9 of a guest gives a crashed event, frees its ports,
// and the lab goes on.
func TestVMCrash(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	l := NewLab(t, "<no_nat>true</no_nat>")
	c := l.Client()
	events, err := c.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	l.addVMs([]string{"k1", "k2"}, "--type", "uml")
	l.MustRun("ctrl", "attach", "k1:eth0", "lan_k")
	l.MustRun("ctrl", "attach", "k2:eth0", "lan_k")
	pid := vmOf(l.List(), "k1").Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for crashed, detached := false, false; !crashed || !detached; {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream closed")
			}
			if e.Type == "vm_state" && e.Attrs["name"] == "k1" && e.Attrs["state"] == "crashed" {
				crashed = true
			}
			if e.Type == "detached" && e.Attrs["port"] == "k1:eth0" {
				detached = true
			}
		case <-deadline:
			t.Fatal("no crashed event and port detach for k1 after kill -9")
		}
	}
	lab := l.List()
	if v := vmOf(lab, "k1"); v == nil || v.State != "crashed" {
		t.Fatalf("k1 listed as %+v", v)
	}
	for _, p := range lab.Ports {
		if p.Name == "k1:eth0" {
			t.Fatalf("k1:eth0 still a port: %+v", p)
		}
	}
	// The lab goes on: k2 runs, a new guest joins, they talk.
	if v := vmOf(lab, "k2"); v == nil || v.State != "running" {
		t.Fatalf("k2 listed as %+v", v)
	}
	l.addVMs([]string{"k3"}, "--type", "uml")
	l.MustRun("ctrl", "attach", "k3:eth0", "lan_k")
	l.vmMust("k2", "ip", "addr", "add", "10.79.0.2/24", "dev", "eth0")
	l.vmMust("k2", "ip", "link", "set", "eth0", "up")
	l.vmMust("k3", "ip", "addr", "add", "10.79.0.3/24", "dev", "eth0")
	l.vmMust("k3", "ip", "link", "set", "eth0", "up")
	if !l.canPing("k3", "10.79.0.2") {
		t.Fatal("k3 cannot ping k2 after k1 crashed")
	}
	if _, err := l.Run("exec", "k1", "--", "true"); err == nil {
		t.Fatal("exec in a crashed guest succeeded")
	}
	l.MustRun("ctrl", "del", "vm", "k1")
	if _, err := os.Stat(filepath.Join(l.Dir, "k1")); !os.IsNotExist(err) {
		t.Fatalf("k1's files left after del: %v", err)
	}
	// The name is free again.
	l.addVMs([]string{"k1"}, "--type", "uml")
}

// TestVMBootTimeout: a guest whose image has no agent gives an event
// after its boot timeout and stays booting.
func TestVMBootTimeout(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatal("mkfs.ext4 missing: install e2fsprogs")
	}
	// An ext4 root whose init is busybox's own: it boots, but no agent.
	root := t.TempDir()
	for _, d := range []string{"sbin", "bin", "etc", "proc", "dev"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static missing: %v", err)
	}
	os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755)
	os.Symlink("/bin/busybox", filepath.Join(root, "sbin", "init"))
	os.Symlink("/bin/busybox", filepath.Join(root, "bin", "sh"))
	img := filepath.Join(t.TempDir(), "noagent.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", root, img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	l := NewLab(t, "<no_nat>true</no_nat>")
	c := l.Client()
	events, err := c.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	l.MustRun("ctrl", "add", "vm", "slow", "--type", "uml", "--rootfs", img, "--boot-timeout", "4")
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream closed")
			}
			if e.Type == "vm_boot_timeout" && e.Attrs["name"] == "slow" {
				done = true
			}
		case <-deadline:
			t.Fatal("no vm_boot_timeout event")
		}
	}
	if d := time.Since(t0); d < 4*time.Second {
		t.Fatalf("boot timeout after %v, asked 4s", d)
	}
	if v := vmOf(l.List(), "slow"); v == nil || v.State != "booting" {
		t.Fatalf("slow listed as %+v", v)
	}
	out, err := l.Run("ctrl", "add", "vm", "slow2", "--type", "uml", "--rootfs", img, "--boot-timeout", "3", "--wait")
	// The error says what the agent line did (no agent here: pings sent,
	// no frame back).
	if err == nil || !strings.Contains(out, "booting") || !strings.Contains(out, "0 frames received") {
		t.Fatalf("add --wait of a guest that never answers: %v %s", err, out)
	}
}

// TestVMBadInput: each mistake gets one clear error and changes nothing.
func TestVMBadInput(t *testing.T) {
	needE2E(t)
	needImages(t, "busybox.img")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"ok1"}, "--type", "uml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"ctrl", "add", "vm", "x1", "--rootfs", "nosuchimage"}, "busybox"}, // lists the images
		{[]string{"ctrl", "add", "vm", "x2", "--type", "uml", "--mem", "4"}, "out of range"},
		{[]string{"ctrl", "add", "vm", "x3", "--type", "uml", "--mem", "99999999"}, "out of range"},
		{[]string{"ctrl", "add", "vm", "ok1", "--type", "uml"}, "already exists"},
		{[]string{"ctrl", "add", "vm", "x4", "--type", "xen"}, "use kvm or uml"},
		{[]string{"ctrl", "add", "vm", "x5", "--type", "uml", "--cpu", "2"}, "one CPU"},
		{[]string{"ctrl", "add", "vm", "x6", "--type", "kvm", "--uml-transport", "bess"}, "UML guests only"},
		{[]string{"ctrl", "add", "vm", "x7", "--type", "uml", "--uml-transport", "tap"}, "bess or daemon"},
		{[]string{"ctrl", "add", "vm", "bad/name"}, "vm name"},
		{[]string{"ctrl", "add", "vm", "ports"}, "reserved"},
		{[]string{"ctrl", "add", "vm", "x8", "--rootfs", "../../etc/passwd"}, "rootfs"},
		{[]string{"ctrl", "add", "vm", "x9", "--type", "kvm", "--kernel", "/no/such/kernel"}, "not found"},
		{[]string{"ctrl", "add", "vm", "x10", "--type", "uml", "--eth", "99"}, "eth"},
		{[]string{"ctrl", "del", "vm", "nosuchvm"}, "no such vm"},
		{[]string{"exec", "nosuchvm", "--", "true"}, "no such vm"},
		{[]string{"console", "nosuchvm"}, "no such vm"},
	}
	for _, c := range cases {
		out, err := l.Run(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%v: want an error with %q, got %v: %s", c.args, c.want, err, out)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n > 0 {
			t.Errorf("%v: error is %d lines: %s", c.args, n+1, out)
		}
	}
	lab := l.List()
	if len(lab.VMs) != 1 || lab.VMs[0].Name != "ok1" || lab.VMs[0].State != "running" || len(lab.Ports) != 1 {
		t.Fatalf("the lab changed: %+v", lab)
	}
	if ents, _ := os.ReadDir(l.Dir); len(ents) > 0 {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "x") {
				t.Fatalf("%s left in work_dir", e.Name())
			}
		}
	}
}
