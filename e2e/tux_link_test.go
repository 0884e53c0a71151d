package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Tux end-to-end tests with a second switch or guests behind a tux: t2t
// between two switches, slirp and tap tux serving guests.

// startSwitchIn starts a switch with its own config inside network
// namespace ns (ns "" for this one); it is stopped when t ends.
func startSwitchIn(t *testing.T, ns, password string) *Lab {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "clxn")
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{t: t, Dir: dir, Config: filepath.Join(dir, "config.xml"), Sock: filepath.Join(dir, "ctl.sock"), Pass: password}
	os.WriteFile(l.Config, []byte(fmt.Sprintf(`<cloonix_config>
  <network_name>e2e-ns-%s</network_name>
  <server_name>%s</server_name>
  <server_port>0</server_port>
  <password>%s</password>
  <work_dir>%s</work_dir>
  <bulk_dir>%s</bulk_dir>
  <no_nat>true</no_nat>
  <mgmt>off</mgmt>
</cloonix_config>
`, filepath.Base(dir), l.Sock, password, dir, bulkDir)), 0o600)
	args := []string{bin, "-c", l.Config, "start"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("start in %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() {
		_, _ = l.Run("stop")
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "switch.log")); err == nil {
				t.Logf("%s switch.log:\n%s", ns, lastLines(string(b), 40))
			}
		}
		os.RemoveAll(dir)
	})
	return l
}

// t2tSwitches makes switch a here and switch b in namespace swNS, joined
// by veth pair h (here, NET.1) and n (in swNS, NET.2), and links their
// lans "lan" with a t2t tux "link": b listens on NET.2:port, a dials it
// with the password they share (a's config's).
func t2tSwitches(t *testing.T, swNS, h, n, net string, port int) (a, b *Lab) {
	t.Helper()
	sh(t, fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s netns %s", h, n, n, swNS))
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", h).Run() })
	sh(t, fmt.Sprintf("ip addr add %s.1/24 dev %s && ip link set %s up && ip netns exec %s ip addr add %s.2/24 dev %s && ip netns exec %s ip link set %s up", net, h, h, swNS, net, n, swNS, n))
	a = NewLab(t, "<no_nat>true</no_nat>")
	b = startSwitchIn(t, swNS, a.Pass)
	addr := fmt.Sprintf("%s.2:%d", net, port)
	b.MustRun("ctrl", "add", "tux", "t2t", "link", "--listen", addr)
	b.MustRun("ctrl", "attach", "link", "lan")
	a.MustRun("ctrl", "add", "tux", "t2t", "link", "--peer", addr)
	a.MustRun("ctrl", "attach", "link", "lan")
	return a, b
}

// TestTuxT2T joins two switches (the second in its own namespace, reached
// over a veth pair) with t2t; a namespace with a tap on each side stands
// for a guest. They ping; the link is cut (the helper killed, on either
// side) and comes back.
func TestTuxT2T(t *testing.T) {
	needE2E(t)
	sfx := tuxSuffix()
	swNS := tuxNetns(t, "clxw"+sfx)
	a, b := t2tSwitches(t, swNS, "clxh"+sfx, "clxv"+sfx, "10.92.0", 7300)
	ga, gb := tuxNetns(t, "clxga"+sfx), tuxNetns(t, "clxgb"+sfx)
	nsTap(t, a, "tp", "clxga"+sfx, "lan", ga, "10.93.0.1")
	// b's tap is made inside b's namespace, then moved to the "guest".
	b.MustRun("ctrl", "add", "tux", "tap", "tp", "--ifname", "clxgb"+sfx)
	b.MustRun("ctrl", "attach", "tp", "lan")
	sh(t, fmt.Sprintf("ip netns exec %s ip link set clxgb%s netns %s && ip netns exec %s ip addr add 10.93.0.2/24 dev clxgb%s && ip netns exec %s ip link set clxgb%s up", swNS, sfx, gb, gb, sfx, gb, sfx))
	ping := "ip netns exec " + ga + " busybox ping -c 1 -W 1 10.93.0.2"
	pingOK := func() error {
		out, err := exec.Command("sh", "-c", ping).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	Eventually(t, 10*time.Second, "ping across t2t", pingOK)
	if x := a.tux("link"); x.Opts["link"] != "up" || x.Counters.TxFrames == 0 || x.Counters.RxFrames == 0 {
		t.Fatalf("t2t in list: %+v", x)
	}
	for _, side := range []*Lab{a, b} {
		killRelaunch(t, side, "link")
		Eventually(t, 15*time.Second, "ping after the t2t helper was killed", pingOK)
	}
	// Frames sent while the link is down are counted as drops.
	b.MustRun("ctrl", "del", "tux", "link")
	_ = exec.Command("sh", "-c", "ip netns exec "+ga+" busybox ping -c 3 -W 1 10.93.0.2").Run()
	Eventually(t, 10*time.Second, "drops while down", func() error {
		x := a.tux("link")
		if x.Counters.Drops == 0 || x.Opts["link"] == "up" {
			return fmt.Errorf("link %s, drops %d", x.Opts["link"], x.Counters.Drops)
		}
		return nil
	})
	b.MustRun("ctrl", "add", "tux", "t2t", "link", "--listen", "10.92.0.2:7300")
	b.MustRun("ctrl", "attach", "link", "lan")
	Eventually(t, 15*time.Second, "ping after the peer came back (back-off redial)", pingOK)
}

// guest boots a busybox UML guest with one eth on lan.
func (l *Lab) tuxGuest(name, lan string) {
	l.t.Helper()
	l.MustRun("ctrl", "add", "vm", name, "--type", "uml", "--mem", "64", "--rootfs", "busybox", "--eth", "1", "--wait")
	l.MustRun("ctrl", "attach", name+":eth0", lan)
}

// TestTuxNatGuest: a guest on a lan with nat takes an address by DHCP,
// fetches a page from the host's loopback through 10.0.2.2 and is reached
// through a forward; after kill -9 of the slirp helper (back within a
// second) both work again.
func TestTuxNatGuest(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "")
	sfx := tuxSuffix()
	l.tuxGuest("G1", "lan")
	l.MustRun("ctrl", "attach", "nat", "lan")
	out := l.mustExec("G1", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "10", "-T", "1", "-s", "/bin/true")
	m := leaseRe.FindStringSubmatch(out)
	if m == nil || m[1] != "10.0.2.15" {
		t.Fatalf("guest DHCP:\n%s", out)
	}
	l.mustExec("G1", "sh", "-c", "ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2")
	port := hostHTTP(t, "host-page-"+sfx)
	url := fmt.Sprintf("http://10.0.2.2:%d/", port)
	if out := l.mustExec("G1", "wget", "-q", "-O", "-", url); !strings.Contains(out, "host-page-"+sfx) {
		t.Fatalf("guest wget: %q", out)
	}
	l.mustExec("G1", "sh", "-c", "nc -ll -p 7000 -e echo guest-"+sfx+" </dev/null >/dev/null 2>&1 &")
	faddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l.MustRun("ctrl", "forward", "add", "nat", "tcp", faddr, "10.0.2.15:7000")
	Eventually(t, 5*time.Second, "forward to the guest", func() error {
		got, err := dialRead(faddr)
		if err == nil && got != "guest-"+sfx {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
	if d := killRelaunch(t, l, "nat"); d > time.Second {
		t.Fatalf("slirp back after %v, want < 1 s", d)
	}
	Eventually(t, 5*time.Second, "forward after relaunch", func() error {
		got, err := dialRead(faddr)
		if err == nil && got != "guest-"+sfx {
			err = fmt.Errorf("got %q", got)
		}
		return err
	})
	if out := l.mustExec("G1", "wget", "-q", "-O", "-", url); !strings.Contains(out, "host-page-"+sfx) {
		t.Fatalf("guest wget after relaunch: %q", out)
	}
	out = l.mustExec("G1", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "10", "-T", "1", "-s", "/bin/true")
	if m := leaseRe.FindStringSubmatch(out); m == nil || m[1] != "10.0.2.15" {
		t.Fatalf("guest lease after relaunch:\n%s", out)
	}
}

// TestTuxTapGuest: a tap moved into a network namespace pings a guest and
// sends it 20 MB over TCP (large segments cut for the guest by the switch).
func TestTuxTapGuest(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	sfx := tuxSuffix()
	ns := tuxNetns(t, "clxt"+sfx)
	l.tuxGuest("G1", "lan")
	l.mustExec("G1", "sh", "-c", "ip link set eth0 up && ip addr add 10.94.0.1/24 dev eth0")
	nsTap(t, l, "tp", "clxt"+sfx, "lan", ns, "10.94.0.100")
	Eventually(t, 10*time.Second, "ping the guest from the namespace", func() error {
		return exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", "10.94.0.1").Run()
	})
	l.mustExec("G1", "busybox", "ping", "-c", "1", "-W", "2", "10.94.0.100")
	l.mustExec("G1", "sh", "-c", "nc -l -p 5001 | wc -c > /tmp/count 2>&1 &")
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	c, err := nsDial(ns, "10.94.0.1:5001")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(make([]byte, 20<<20)); err != nil {
		t.Fatalf("sending 20 MB: %v", err)
	}
	c.Close()
	Eventually(t, 30*time.Second, "20 MB received by the guest", func() error {
		out, err := l.exec("G1", "cat", "/tmp/count")
		if err != nil || strings.TrimSpace(out) != "20971520" {
			return fmt.Errorf("count %q %v", out, err)
		}
		return nil
	})
	t.Logf("20 MB from the namespace to the guest in %v", time.Since(start))
}

// nsDial connects to addr from inside network namespace ns: the socket
// is made on a thread switched into ns (sockets keep their namespace).
func nsDial(ns, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return nil, err
	}
	defer netns.Set(orig)
	return net.DialTimeout("tcp", addr, 5*time.Second)
}

// TestTuxT2TGuests: a guest on each of two switches (the second in its own
// network namespace), their lans joined by t2t: they ping; the TCP link is
// cut by killing a helper and comes back.
func TestTuxT2TGuests(t *testing.T) {
	needE2E(t)
	sfx := tuxSuffix()
	swNS := tuxNetns(t, "clxW"+sfx)
	a, b := t2tSwitches(t, swNS, "clxH"+sfx, "clxV"+sfx, "10.95.0", 7302)
	a.tuxGuest("GA", "lan")
	b.tuxGuest("GB", "lan")
	a.mustExec("GA", "sh", "-c", "ip link set eth0 up && ip addr add 10.96.0.1/24 dev eth0")
	b.mustExec("GB", "sh", "-c", "ip link set eth0 up && ip addr add 10.96.0.2/24 dev eth0")
	pingOK := func() error {
		out, err := a.exec("GA", "ping", "-c", "1", "-W", "1", "10.96.0.2")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	Eventually(t, 15*time.Second, "guests ping across t2t", pingOK)
	b.mustExec("GB", "ping", "-c", "1", "-W", "2", "10.96.0.1")
	for _, side := range []*Lab{a, b} {
		killRelaunch(t, side, "link")
		Eventually(t, 15*time.Second, "ping after the link was cut", pingOK)
	}
}
