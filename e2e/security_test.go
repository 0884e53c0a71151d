package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 15 (hardening), end to end. See docs/security.md.

// hostGreeter listens on the host's loopback and greets each connection.
func hostGreeter(t *testing.T, msg string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, msg+"\n")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestGuestCannotReachLab (finding 1): a guest on the nat lan (a network
// namespace behind a tap tux, as a guest's kernel would send) reaches an
// ordinary host port through the gateway, but neither the switch's TCP
// control port nor the graph page, whichever address it tries; and the
// graph page gives its token to no one who did not open the one-time URL.
func TestGuestCannotReachLab(t *testing.T) {
	l := NewLab(t, "")
	sfx := tuxSuffix()
	ns := tuxNetns(t, "hard"+sfx)
	ifn := "hard" + sfx
	l.MustRun("ctrl", "attach", "nat", "lan")
	nsTap(t, l, "tp", ifn, "lan", ns, "")
	nsDHCP(t, ns, ifn)
	ncSend := func(host string, port int, send string) string {
		cmd := exec.Command("sh", "-c", fmt.Sprintf("timeout 10 ip netns exec %s busybox nc -w 3 %s %d", ns, host, port))
		cmd.Stdin = strings.NewReader(send)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	nc := func(host string, port int) string { return ncSend(host, port, "") }
	// The path works: an ordinary host service answers through 10.0.2.2.
	if out := nc("10.0.2.2", hostGreeter(t, "hello-"+sfx)); !strings.Contains(out, "hello-"+sfx) {
		t.Fatalf("ordinary host port through the gateway: %q", out)
	}
	// The switch's control port answers on the host itself...
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", l.TCPPort))
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('>')
	c.Close()
	if !strings.Contains(line, "challenge") {
		t.Fatalf("control port on the host: %q", line)
	}
	// ...but not to the guest, through the gateway or the DNS address.
	for _, h := range []string{"10.0.2.2", "10.0.2.3"} {
		if out := nc(h, l.TCPPort); strings.Contains(out, "challenge") {
			t.Errorf("guest reached the switch's control port at %s:%d: %q", h, l.TCPPort, out)
		}
	}
	// The graph page: the one-time URL works on the host; the guest
	// cannot reach the page's port at all; a plain GET / on the host gets
	// no token.
	u := graphServer(t, l)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	port := pu.Port()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%s/", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || strings.Contains(string(b), "cloonix-token") {
		t.Errorf("GET / without the one-time URL: %d %q", resp.StatusCode, b)
	}
	gport, _ := strconv.Atoi(port)
	if out := ncSend("10.0.2.2", gport, "GET / HTTP/1.0\r\nHost: 127.0.0.1:"+port+"\r\n\r\n"); strings.Contains(out, "HTTP/1.") {
		t.Errorf("guest reached the graph page: %q", out)
	}
	jar := &http.Client{Jar: newJar(t)}
	resp, err = jar.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = jar.Get(fmt.Sprintf("http://127.0.0.1:%s/", port)) // where the page's refresh leads
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "cloonix-token") {
		t.Errorf("the page after the one-time URL, on the host: %d", resp.StatusCode)
	}
}

// TestSwitchUnderUmaskZero (finding 7): a switch started under umask 000,
// with a guest, a lan, VDE and the nat tux, creates nothing group or
// others may use.
func TestSwitchUnderUmaskZero(t *testing.T) {
	old := syscall.Umask(0)
	l := NewLab(t, "")
	syscall.Umask(old)
	l.MustRun("ctrl", "add", "vm", "U1", "--type", "uml", "--rootfs", "busybox", "--mem", "64")
	l.MustRun("ctrl", "attach", "U1:eth0", "lan_u")
	l.MustRun("ctrl", "attach", "nat", "lan_u")
	Eventually(t, 120*time.Second, "U1 running", func() error {
		for _, v := range l.List().VMs {
			if v.Name == "U1" && v.State == "running" {
				return nil
			}
		}
		return fmt.Errorf("not running")
	})
	n := 0
	err := filepath.Walk(l.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil // vanished while walking
		}
		n++
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v under umask 000", p, fi.Mode())
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d paths under %s: %v", n, l.Dir, err)
	}
}

// tuxRunning waits until tux name's helper runs (a fresh lab's nat is
// still starting for a moment).
func tuxRunning(t *testing.T, l *Lab, name string) {
	t.Helper()
	Eventually(t, 20*time.Second, "tux "+name+" running", func() error {
		if x := tuxOf(l.List(), name); x == nil || x.State != "running" || x.Pid <= 0 {
			return fmt.Errorf("%+v", x)
		}
		return nil
	})
}

func newJar(t *testing.T) http.CookieJar {
	j, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// procStatus reads fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// TestHelpersUnprivileged (finding 10): the slirp and t2t helpers run as
// nobody with no capabilities and no_new_privs, the tap helper with
// CAP_NET_ADMIN alone and no_new_privs; the slirp still serves DHCP and
// keeps its leases across a relaunch.
func TestHelpersUnprivileged(t *testing.T) {
	l := NewLab(t, "")
	port := freePort(t)
	l.MustRun("ctrl", "add", "tux", "t2t", "tl", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	tuxRunning(t, l, "nat")
	tuxRunning(t, l, "tl")
	sfx := tuxSuffix()
	ns := tuxNetns(t, "hard"+sfx)
	ifn := "hard" + sfx
	l.MustRun("ctrl", "attach", "nat", "lan")
	nsTap(t, l, "tp", ifn, "lan", ns, "")
	tuxRunning(t, l, "tp")
	for _, c := range []struct {
		tux, uid, capEff string
	}{{"nat", "65534", "0000000000000000"}, {"tl", "65534", "0000000000000000"}, {"tp", "0", "0000000000001000"}} {
		// The helper drops its privileges as it finishes its setup.
		Eventually(t, 10*time.Second, c.tux+" helper unprivileged", func() error {
			st := procStatus(t, l.tux(c.tux).Pid)
			if !strings.HasPrefix(st["Uid"], c.uid+" "+c.uid+" "+c.uid) || st["CapEff"] != c.capEff || st["NoNewPrivs"] != "1" {
				return fmt.Errorf("Uid %q CapEff %q NoNewPrivs %q, want uid %s, CapEff %s, no_new_privs", st["Uid"], st["CapEff"], st["NoNewPrivs"], c.uid, c.capEff)
			}
			return nil
		})
	}
	ip := nsDHCP(t, ns, ifn)
	// The lease survives the helper's death (kept through its open file).
	Eventually(t, 10*time.Second, "lease written", func() error {
		b, err := os.ReadFile(filepath.Join(l.Dir, "tux", "nat.leases"))
		if err != nil || !strings.Contains(string(b), ip) {
			return fmt.Errorf("nat.leases: %q %v", b, err)
		}
		return nil
	})
	old := l.tux("nat").Pid
	_ = syscall.Kill(old, syscall.SIGKILL)
	Eventually(t, 10*time.Second, "nat relaunched", func() error {
		if p := l.tux("nat").Pid; p == old || p == 0 {
			return fmt.Errorf("pid %d", p)
		}
		return nil
	})
	if again := nsDHCP(t, ns, ifn); again != ip {
		t.Errorf("lease after relaunch %s, want %s", again, ip)
	}
}

// TestForwardNeedsPublic (finding 12): `forward add` refuses a host
// address beyond loopback unless --public.
func TestForwardNeedsPublic(t *testing.T) {
	l := NewLab(t, "")
	tuxRunning(t, l, "nat")
	port := freePort(t)
	out, err := l.Run("ctrl", "forward", "add", "nat", "tcp", fmt.Sprintf("0.0.0.0:%d", port), "10.0.2.15:22")
	if err == nil || !strings.Contains(out, "--public") {
		t.Fatalf("forward from 0.0.0.0 without --public: %v %s", err, out)
	}
	l.MustRun("ctrl", "forward", "add", "nat", "tcp", fmt.Sprintf("0.0.0.0:%d", port), "10.0.2.15:22", "--public")
	l.MustRun("ctrl", "forward", "add", "nat", "tcp", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "10.0.2.15:22")
}

// TestCntUnderPrivateUmask (finding 7's umask 077 in the switch): a
// container's own files keep their modes: / is 0755 and a non-root user
// inside can list it and read /etc/passwd.
func TestCntUnderPrivateUmask(t *testing.T) {
	needRunc(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"cu"}, "--type", "cnt")
	if out := strings.TrimSpace(l.vmMust("cu", "stat", "-c", "%a", "/")); out != "755" {
		t.Fatalf("the container's / has mode %s, want 755", out)
	}
	l.vmMust("cu", "su", "-s", "/bin/sh", "nobody", "-c", "ls / >/dev/null && cat /etc/passwd >/dev/null")
}
