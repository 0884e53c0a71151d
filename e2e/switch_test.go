package e2e

// The switch with real guests: two QEMU machines under TCG boot Debian's
// kernel with a busybox initramfs this test builds, their e1000 NICs
// plugged through `-netdev stream` (and `-netdev dgram`) into raw ports
// on one lan; pings go through the switch, stop when a port is detached
// and come back when it is attached again.

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// swKernel finds a Debian kernel and the e1000 module built for it.
func swKernel(t *testing.T) (vmlinuz, e1000 string) {
	t.Helper()
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	for _, k := range kernels {
		ver := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		m := filepath.Join("/lib/modules", ver, "kernel/drivers/net/ethernet/intel/e1000/e1000.ko")
		if _, err := os.Stat(m); err == nil {
			return k, m
		}
	}
	t.Fatalf("no /boot/vmlinuz-VERSION with /lib/modules/VERSION/.../e1000/e1000.ko: install linux-image-amd64 (scripts/debian-packages.txt)")
	return "", ""
}

// cpioWriter writes the newc format the kernel unpacks as initramfs.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte, rmajor, rminor int) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(data)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, c.err = c.w.Write(b.Bytes())
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
	sIFCHR = 0o020000
)

// swInit is the guest's /init: busybox, the e1000 module, an address
// from the kernel command line, then a shell on the console.
const swInit = `#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
ip=$(sed -n 's/.*cloonix.ip=\([0-9.]*\).*/\1/p' /proc/cmdline)
insmod /e1000.ko || echo "CLOONIX-FAIL insmod e1000"
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n+1)); done
ip link set lo up
if ip addr add $ip/24 dev eth0 && ip link set eth0 up; then echo "CLOONIX-READY $ip"; else echo "CLOONIX-FAIL network"; fi
exec sh
`

// swInitramfs builds the initramfs from busybox-static and the module.
func swInitramfs(t *testing.T, dir, e1000 string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox: %v (install busybox-static)", err)
	}
	if ef, err := elf.NewFile(bytes.NewReader(bb)); err != nil {
		t.Fatalf("/bin/busybox: %v", err)
	} else {
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				t.Fatalf("/bin/busybox is dynamically linked: install busybox-static")
			}
		}
	}
	mod, err := os.ReadFile(e1000)
	if err != nil {
		t.Fatal(err)
	}
	// Its only dependency must be the kernel itself.
	if out, err := exec.Command("modinfo", "-F", "depends", e1000).Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		t.Fatalf("e1000 depends on %q: this initramfs carries e1000 alone", out)
	}
	path := filepath.Join(dir, "initramfs.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root"} {
		c.entry(d, sIFDIR|0o755, nil, 0, 0)
	}
	c.entry("dev/console", sIFCHR|0o600, nil, 5, 1)
	c.entry("bin/busybox", sIFREG|0o755, bb, 0, 0)
	c.entry("bin/sh", sIFLNK|0o777, []byte("busybox"), 0, 0)
	c.entry("init", sIFREG|0o755, []byte(swInit), 0, 0)
	c.entry("e1000.ko", sIFREG|0o644, mod, 0, 0)
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	if c.err != nil {
		t.Fatal(c.err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// swGuest is one QEMU machine driven through its serial console.
type swGuest struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	mu     sync.Mutex
	out    bytes.Buffer
	seen   int // console offset already matched
	seq    int
	exited chan struct{}
}

func (g *swGuest) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(b)
}

// swBoot starts a guest whose eth0 is netdev (a -netdev value, id n0).
func swBoot(t *testing.T, dir, name, kernel, initrd, ip, mac, netdev string) *swGuest {
	t.Helper()
	g := &swGuest{t: t, name: name, exited: make(chan struct{})}
	g.cmd = exec.Command("qemu-system-x86_64",
		"-name", name, "-machine", "pc,accel=tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 loglevel=3 panic=-1 cloonix.ip="+ip,
		"-serial", "stdio",
		"-netdev", netdev, "-device", "e1000,netdev=n0,mac="+mac)
	var err error
	if g.in, err = g.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	g.cmd.Stdout, g.cmd.Stderr = g, g
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("qemu-system-x86_64: %v (install qemu-system-x86)", err)
	}
	go func() {
		_ = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.exited
		if t.Failed() {
			t.Logf("console of %s (last lines):\n%s", name, lastLines(g.console(), 40))
		}
	})
	return g
}

func (g *swGuest) console() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

// wait returns the first match of re in console output not matched before.
func (g *swGuest) wait(re *regexp.Regexp, d time.Duration, what string) []string {
	g.t.Helper()
	deadline := time.Now().Add(d)
	for {
		g.mu.Lock()
		s := g.out.String()
		g.mu.Unlock()
		if loc := re.FindStringSubmatchIndex(s[g.seen:]); loc != nil {
			m := re.FindStringSubmatch(s[g.seen:])
			g.seen += loc[1]
			return m
		}
		select {
		case <-g.exited:
			g.t.Fatalf("%s: QEMU exited while waiting for %s:\n%s", g.name, what, lastLines(s, 30))
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: no %s after %v; console:\n%s", g.name, what, d, lastLines(s, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sh runs a command in the guest's shell and returns its exit code. The
// marker is split in the typed line so the tty's echo cannot match it.
func (g *swGuest) sh(cmd string, d time.Duration) int {
	g.t.Helper()
	g.seq++
	if _, err := fmt.Fprintf(g.in, "%s; echo \"@@\"\"%d rc=$?\"\n", cmd, g.seq); err != nil {
		g.t.Fatalf("%s: console: %v", g.name, err)
	}
	m := g.wait(regexp.MustCompile(fmt.Sprintf(`@@%d rc=(\d+)`, g.seq)), d, fmt.Sprintf("the end of %q", cmd))
	rc, _ := strconv.Atoi(m[1])
	return rc
}

var swReady = regexp.MustCompile(`CLOONIX-(READY|FAIL)[^\r\n]*`)

func (g *swGuest) ready() {
	g.t.Helper()
	// TCG on a busy two-core machine: booting may take minutes.
	m := g.wait(swReady, 6*time.Minute, "CLOONIX-READY (boot)")
	if m[1] != "READY" {
		g.t.Fatalf("%s: %s", g.name, m[0])
	}
}

// swPort adds a raw port and returns its socket (the last line of stdout).
func swPort(l *Lab, name, kind, lan string) string {
	out := strings.TrimSpace(l.MustRun("ctrl", "add", "port", name, "--kind", kind))
	lines := strings.Split(out, "\n")
	sock := lines[len(lines)-1]
	if !strings.HasPrefix(sock, l.Dir) {
		l.t.Fatalf("add port %s printed %q, want a socket in %s", name, out, l.Dir)
	}
	l.MustRun("ctrl", "attach", name, lan)
	return sock
}

func swPortInfo(l *Lab, name string) (connected bool, rx, tx uint64) {
	for _, p := range l.List().Ports {
		if p.Name == name {
			return p.Connected, p.Counters.RxFrames, p.Counters.TxFrames
		}
	}
	l.t.Fatalf("port %s not in list", name)
	return
}

// swPingCycle: g2 pings g1 through the lan; detaching port det stops it,
// attaching it again brings it back.
func swPingCycle(t *testing.T, l *Lab, g1, g2 *swGuest, det, lan string) {
	const pingOK = "ping -c 3 -W 3 10.0.0.1"
	if rc := g2.sh(pingOK, 2*time.Minute); rc != 0 {
		// The first ping races ARP and the link coming up: once more.
		if rc = g2.sh(pingOK, 2*time.Minute); rc != 0 {
			t.Fatalf("guest 2 cannot ping guest 1 through lan %s (rc %d)", lan, rc)
		}
	}
	_, rx, tx := swPortInfo(l, det)
	if rx == 0 || tx == 0 {
		t.Errorf("port %s counters rx %d tx %d after pings, want both > 0", det, rx, tx)
	}
	l.MustRun("ctrl", "detach", det, lan)
	if rc := g2.sh("ping -c 3 -W 2 10.0.0.1", 2*time.Minute); rc == 0 {
		t.Fatalf("ping passes with port %s detached from %s", det, lan)
	}
	l.MustRun("ctrl", "attach", det, lan)
	if rc := g2.sh(pingOK, 2*time.Minute); rc != 0 {
		t.Fatalf("ping fails after attaching %s to %s again (rc %d)", det, lan, rc)
	}
}

func swSetup(t *testing.T) (l *Lab, kernel, initrd string) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: install qemu-system-x86")
	}
	kernel, e1000 := swKernel(t)
	l = NewLab(t, "<no_nat>true</no_nat>")
	initrd = swInitramfs(t, l.Dir, e1000)
	return l, kernel, initrd
}

// TestSwitchQEMUStream: two guests on stream ports of one lan.
func TestSwitchQEMUStream(t *testing.T) {
	needE2E(t)
	l, kernel, initrd := swSetup(t)
	lan := "lan_" + filepath.Base(l.Dir)
	s1 := swPort(l, "g1", "stream", lan)
	s2 := swPort(l, "g2", "stream", lan)
	g1 := swBoot(t, l.Dir, "g1", kernel, initrd, "10.0.0.1", "52:54:00:c1:00:01", "stream,id=n0,server=off,addr.type=unix,addr.path="+s1)
	g2 := swBoot(t, l.Dir, "g2", kernel, initrd, "10.0.0.2", "52:54:00:c1:00:02", "stream,id=n0,server=off,addr.type=unix,addr.path="+s2)
	for _, p := range []string{"g1", "g2"} {
		Eventually(t, time.Minute, "port "+p+" connected", func() error {
			if c, _, _ := swPortInfo(l, p); !c {
				return fmt.Errorf("%s not connected", p)
			}
			return nil
		})
	}
	g1.ready()
	g2.ready()
	swPingCycle(t, l, g1, g2, "g1", lan)
	// Guest 1 reaches guest 2 too, and the lan counted what it carried.
	if rc := g1.sh("ping -c 2 -W 3 10.0.0.2", 2*time.Minute); rc != 0 {
		t.Errorf("guest 1 cannot ping guest 2 (rc %d)", rc)
	}
	for _, ln := range l.List().Lans {
		if ln.Name == lan && (ln.Counters.RxFrames == 0 || ln.Counters.TxFrames == 0) {
			t.Errorf("lan %s counters %+v", lan, ln.Counters)
		}
	}
}

// TestSwitchQEMUDgram: guest 2 on a dgram port, guest 1 on a stream
// port, one lan: the two transports switch into each other.
func TestSwitchQEMUDgram(t *testing.T) {
	needE2E(t)
	l, kernel, initrd := swSetup(t)
	lan := "lan_" + filepath.Base(l.Dir)
	s1 := swPort(l, "g1", "stream", lan)
	s2 := swPort(l, "g2", "dgram", lan)
	if c, _, _ := swPortInfo(l, "g2"); c {
		t.Error("dgram port connected before its guest sent anything")
	}
	g1 := swBoot(t, l.Dir, "g1", kernel, initrd, "10.0.0.1", "52:54:00:c2:00:01", "stream,id=n0,server=off,addr.type=unix,addr.path="+s1)
	g2 := swBoot(t, l.Dir, "g2", kernel, initrd, "10.0.0.2", "52:54:00:c2:00:02",
		"dgram,id=n0,local.type=unix,local.path="+filepath.Join(l.Dir, "g2-qemu.sock")+",remote.type=unix,remote.path="+s2)
	g1.ready()
	g2.ready()
	swPingCycle(t, l, g1, g2, "g2", lan)
	if c, _, _ := swPortInfo(l, "g2"); !c {
		t.Error("dgram port not connected after its guest spoke")
	}
}

// TestSwitchCLI: the command line around the switch: two labs side by
// side, events as they happen, list --json, TCP control with and without
// the password, stop waiting for the process and removing its sockets.
func TestSwitchCLI(t *testing.T) {
	needE2E(t)
	a := NewLab(t, "<no_nat>true</no_nat>")
	b := NewLab(t, "<no_nat>true</no_nat>")
	// Events of a, as JSON lines.
	ev := exec.Command(bin, "-c", a.Config, "event", "--json")
	evOut := &swGuest{t: t} // reused as a locked buffer
	ev.Stdout = evOut
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ev.Process.Kill(); _ = ev.Wait() }()
	Eventually(t, 30*time.Second, "event subscribed", func() error {
		// A change that only shows up once the subscriber is in.
		a.MustRun("ctrl", "add", "lan", "probe")
		a.MustRun("ctrl", "del", "lan", "probe")
		if !strings.Contains(evOut.console(), `"lan_deleted"`) {
			return fmt.Errorf("no events yet")
		}
		return nil
	})
	a.MustRun("ctrl", "add", "lan", "shared_name")
	b.MustRun("ctrl", "add", "lan", "shared_name")
	sock := swPort(a, "p1", "stream", "lan_a")
	if want := filepath.Join(a.Dir, "ports", "p1.sock"); sock != want {
		t.Errorf("socket %s, want %s", sock, want)
	}
	swPort(b, "p1", "dgram", "lan_b")
	a.MustRun("ctrl", "detach", "p1", "lan_a")
	a.MustRun("ctrl", "del", "port", "p1")
	want := []map[string]string{
		{"type": "lan_added", "name": "shared_name"},
		{"type": "port_added", "name": "p1", "kind": "stream", "socket": sock},
		{"type": "attached", "port": "p1", "lan": "lan_a"},
		{"type": "detached", "port": "p1", "lan": "lan_a"},
		{"type": "port_deleted", "name": "p1"},
	}
	Eventually(t, 30*time.Second, "events", func() error {
		var got []map[string]string
		for _, line := range strings.Split(evOut.console(), "\n") {
			var m map[string]string
			if json.Unmarshal([]byte(line), &m) == nil {
				got = append(got, m)
			}
		}
		// In order, each with its fields (and a time).
		i := 0
		for _, g := range got {
			if i < len(want) && swMatch(g, want[i]) {
				if g["time"] == "" {
					return fmt.Errorf("event without time: %v", g)
				}
				i++
			}
		}
		if i < len(want) {
			return fmt.Errorf("missing event %v in %s", want[i], evOut.console())
		}
		return nil
	})
	if strings.Contains(evOut.console(), "lan_b") {
		t.Error("lab a reported an event of lab b")
	}
	// list --json has the documented shape; each lab sees its own.
	out := b.MustRun("ctrl", "list", "--json")
	for _, k := range []string{`"vms": []`, `"lans": [`, `"tux": []`, `"ports": [`, `"counters": {`, `"rx_frames": 0`, `"drops": 0`, `"socket": "` + b.Dir} {
		if !strings.Contains(out, k) {
			t.Errorf("list --json lacks %s:\n%s", k, out)
		}
	}
	if lab := a.List(); len(lab.Ports) != 0 || len(lab.Lans) != 1 {
		t.Errorf("lab a: %+v", lab)
	}
	swTCPAndStop(t, a, b)
	a.MustRun("ctrl", "list") // the other lab is untouched
}

// swTCPAndStop: TCP control of a takes the password only; stop of b
// returns once its process and sockets are gone.
func swTCPAndStop(t *testing.T, a, b *Lab) {
	// TCP control: the password answers the challenge; a wrong one fails.
	srv := fmt.Sprintf("tcp:127.0.0.1:%d", a.TCPPort)
	cmd := exec.Command(bin, "--server", srv, "ctrl", "list")
	cmd.Env = append(os.Environ(), "CLOONIX_PASSWORD=wrong")
	if o, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(o), "authentication failed") || strings.Count(strings.TrimSpace(string(o)), "\n") != 0 {
		t.Errorf("wrong password: %v %q", err, o)
	}
	cmd = exec.Command(bin, "--server", srv, "ctrl", "add", "lan", "by_tcp")
	cmd.Env = append(os.Environ(), "CLOONIX_PASSWORD="+a.Pass)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("right password: %v %s", err, o)
	}
	// stop: returns once the process is gone and its sockets removed.
	pid := 0
	if p, err := os.ReadFile(filepath.Join(b.Dir, "switch.pid")); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(p)))
	}
	if pid == 0 {
		t.Fatal("no pid file")
	}
	b.MustRun("stop")
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z") {
			t.Errorf("switch pid %d still running after stop", pid)
		}
	}
	for _, f := range []string{b.Sock, filepath.Join(b.Dir, "ports"), filepath.Join(b.Dir, "switch.pid")} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s left after stop", f)
		}
	}
	if o, err := b.Run("ctrl", "list"); err == nil || !strings.Contains(o, "is it running") {
		t.Errorf("list after stop: %v %s", err, o)
	}
}

func swMatch(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
