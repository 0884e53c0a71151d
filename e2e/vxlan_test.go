package e2e

// VXLAN tux end-to-end tests (issue 7). Each "host" is a network namespace
// holding a switch; the hosts are joined by a veth pair (the underlay).
// Namespaces holding a tap stand in for guests where no guest is needed;
// TestVXLANGuests boots busybox guests from one topology folder per host.
// Every netns, veth and tap name carries a random suffix; traffic stays in
// the test's own namespaces.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// vxUnderlay joins namespaces a and b with a veth pair: ipA/24 in a,
// ipB/24 in b, both with the given MTU.
func vxUnderlay(t *testing.T, sfx, a, b, ipA, ipB string, mtu int) {
	t.Helper()
	va, vb := "clxxa"+sfx, "clxxb"+sfx
	sh(t, fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s netns %s && ip link set %s netns %s", va, vb, va, a, vb, b))
	for _, x := range []struct{ ns, ifn, ip string }{{a, va, ipA}, {b, vb, ipB}} {
		sh(t, fmt.Sprintf("ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s mtu %d up", x.ns, x.ip, x.ifn, x.ns, x.ifn, mtu))
	}
}

// vxTapIn adds a tap tux (made in the switch's namespace swNS) on lan and
// moves its interface into ns with addr/24 and the given MTU.
func vxTapIn(t *testing.T, l *Lab, swNS, name, ifname, lan, ns, addr string, mtu int) {
	t.Helper()
	l.MustRun("ctrl", "add", "tux", "tap", name, "--ifname", ifname)
	l.MustRun("ctrl", "attach", name, lan)
	sh(t, fmt.Sprintf("ip netns exec %s ip link set %s netns %s && ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s mtu %d up",
		swNS, ifname, ns, ns, addr, ifname, ns, ifname, mtu))
}

// vxPing is one ping from ns to addr, as Eventually wants it.
func vxPing(ns, addr string) func() error {
	return func() error {
		out, err := exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", addr).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s from %s: %v: %s", addr, ns, err, out)
		}
		return nil
	}
}

var vxIperfRe = regexp.MustCompile(`([0-9.]+) ([GMK])bits/sec\s+receiver`)

// vxIperf runs iperf3 for secs from client to a server in server at
// addr (reverse: the server sends) and returns Gbit/s.
func vxIperf(t *testing.T, client, server, addr string, secs int, reverse bool) float64 {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", server, "iperf3", "-s", "-1")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	args := []string{"netns", "exec", client, "iperf3", "-c", addr, "-t", strconv.Itoa(secs)}
	if reverse {
		args = append(args, "-R")
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
	}
	m := vxIperfRe.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no iperf3 result:\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	v /= map[string]float64{"G": 1, "M": 1e3, "K": 1e6}[m[2]]
	return v
}

// udpIn opens a UDP socket bound to laddr inside namespace ns.
func udpIn(t *testing.T, ns, laddr string) *net.UDPConn {
	t.Helper()
	type res struct {
		c   *net.UDPConn
		err error
	}
	ch := make(chan res)
	go func() {
		// The thread enters ns and is not given back to the runtime
		// unless it returned to the original namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- res{nil, err}
			return
		}
		a, err := net.ResolveUDPAddr("udp4", laddr)
		var c *net.UDPConn
		if err == nil {
			c, err = net.ListenUDP("udp4", a)
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("UDP socket on %s in %s: %v", laddr, ns, r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c
}

// vxDatagram is a VXLAN datagram for vni around a 60-byte frame.
func vxDatagram(vni uint32) []byte {
	b := make([]byte, 8+60)
	b[0] = 0x08
	b[4], b[5], b[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	copy(b[8:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0xee, 1, 0x88, 0xb5})
	return b
}

// TestVXLANTwoSwitches: two switches, each in its own namespace, joined
// by vxlan tux over a veth pair; a namespace on a tap on each side. They
// ping and iperf3 runs through; the helper is killed and relaunched; bad
// input (values, remote, ports, malformed datagrams) gets one clear error
// or a counted drop and changes nothing else.
func TestVXLANTwoSwitches(t *testing.T) {
	needE2E(t)
	sfx := tuxSuffix()
	nsA, nsB := tuxNetns(t, "clxxa"+sfx), tuxNetns(t, "clxxb"+sfx)
	// The underlay carries 1500-byte guest frames whole (1500 + 50).
	vxUnderlay(t, sfx, nsA, nsB, "10.94.0.1", "10.94.0.2", 1550)
	a, b := startSwitchIn(t, nsA, "pw-a"+sfx), startSwitchIn(t, nsB, "pw-b"+sfx)
	a.MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", "10.94.0.2", "--vni", "4242", "--local", "10.94.0.1")
	a.MustRun("ctrl", "attach", "vx", "lan")
	b.MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", "10.94.0.1", "--vni", "4242", "--local", "10.94.0.2")
	b.MustRun("ctrl", "attach", "vx", "lan")
	ga, gb := tuxNetns(t, "clxxg"+sfx), tuxNetns(t, "clxxh"+sfx)
	vxTapIn(t, a, nsA, "tp", "clxxt"+sfx, "lan", ga, "10.95.0.1", 1500)
	vxTapIn(t, b, nsB, "tp", "clxxu"+sfx, "lan", gb, "10.95.0.2", 1500)
	Eventually(t, 10*time.Second, "ping across vxlan", vxPing(ga, "10.95.0.2"))
	gbit := vxIperf(t, ga, gb, "10.95.0.2", 3, false)
	t.Logf("iperf3 across vxlan: %.2f Gbit/s", gbit)
	if gbit < 0.01 {
		t.Fatalf("iperf3 across vxlan: %.3f Gbit/s", gbit)
	}
	x := a.tux("vx")
	if x.Kind != "vxlan" || x.State != "running" || x.Opts["link"] != "up" || x.Counters.TxFrames < 1000 || x.Counters.RxFrames < 100 || x.Counters.Drops != 0 {
		t.Fatalf("vxlan tux in list after iperf3: %+v", x)
	}
	if x.Opts["remote"] != "10.94.0.2" || x.Opts["vni"] != "4242" || x.Opts["port"] != "4789" || x.Opts["local"] != "10.94.0.1" || len(x.Lans) != 1 {
		t.Fatalf("vxlan options in list: %+v", x)
	}

	// Relaunched within a second; traffic comes back.
	for _, side := range []*Lab{a, b} {
		if d := killRelaunch(t, side, "vx"); d > 2*time.Second {
			t.Errorf("relaunch took %v", d)
		}
		Eventually(t, 10*time.Second, "ping after the vxlan helper was killed", vxPing(ga, "10.95.0.2"))
	}

	vxlanBadOptions(t, a, nsA)

	// Malformed datagrams from the network: counted drops, nothing else.
	sh(t, fmt.Sprintf("ip netns exec %s ip addr add 10.94.0.3/24 dev clxxb%s", nsB, sfx))
	peer := udpIn(t, nsB, "10.94.0.2:0")
	stranger := udpIn(t, nsB, "10.94.0.3:0")
	dst := &net.UDPAddr{IP: net.IPv4(10, 94, 0, 1), Port: 4789}
	noI := vxDatagram(4242)
	noI[0] = 0x80
	for _, d := range []struct {
		c *net.UDPConn
		b []byte
	}{
		{peer, []byte{0x08, 0, 0}},    // short
		{peer, vxDatagram(4242)[:20]}, // short inner frame
		{peer, noI},                   // flags: I clear
		{peer, vxDatagram(4243)},      // another VNI
		{stranger, vxDatagram(4242)},  // not a remote
	} {
		if _, err := d.c.WriteToUDP(d.b, dst); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 5*time.Second, "malformed datagrams counted", func() error {
		x := a.tux("vx")
		if x.Counters.Drops != 5 || x.Opts["link"] != "up (dropped: 2 short, 1 flags, 1 vni, 1 source)" {
			return fmt.Errorf("drops %d, link %q", x.Counters.Drops, x.Opts["link"])
		}
		return nil
	})
	Eventually(t, 5*time.Second, "ping after malformed datagrams", vxPing(ga, "10.95.0.2"))
	if x := a.tux("vx"); x.State != "running" || x.Restarts != 1 {
		t.Fatalf("vxlan tux after malformed datagrams: %+v", x)
	}

	// A frame too long for one UDP datagram (65502 bytes > 65499): counted,
	// not truncated, and nothing else happens.
	sh(t, fmt.Sprintf("ip netns exec %s ip link set clxxt%s mtu 65521", ga, sfx))
	_ = exec.Command("ip", "netns", "exec", ga, "busybox", "ping", "-c", "1", "-W", "1", "-s", "65460", "10.95.0.2").Run()
	Eventually(t, 5*time.Second, "the oversize frame counted", func() error {
		if x := a.tux("vx"); x.Counters.Drops != 6 || !strings.Contains(x.Opts["link"], "1 oversize") {
			return fmt.Errorf("drops %d, link %q", x.Counters.Drops, x.Opts["link"])
		}
		return nil
	})
	Eventually(t, 5*time.Second, "ping after the oversize frame", vxPing(ga, "10.95.0.2"))
}

// vxlanBadOptions: bad options for a vxlan tux on switch a (in namespace
// nsA) each get one clear line, and a failed add leaves nothing.
func vxlanBadOptions(t *testing.T, a *Lab, nsA string) {
	udpIn(t, nsA, "0.0.0.0:4790") // another program holds UDP port 4790
	before := a.MustRun("ctrl", "list", "--json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--remote", "10.94.0.2", "--vni", "16777216"}, "out of range"},
		{[]string{"--remote", "10.94.0.2", "--vni", "-3"}, "out of range"},
		{[]string{"--remote", "10.94.0.2"}, "needs --vni"},
		{[]string{"--remote", "10.94.0.300", "--vni", "1"}, "not an IP address"},
		{[]string{"--remote", "239.0.0.1", "--vni", "1"}, "multicast"},
		{[]string{"--remote", "198.51.100.7", "--vni", "1"}, "unreachable"},
		{[]string{"--remote", "10.94.0.2", "--vni", "1"}, "taken by vxlan tux vx"},
		{[]string{"--remote", "10.94.0.2", "--vni", "1", "--port", "4790", "--listen-any"}, "in use"},
		{[]string{"--remote", "10.94.0.2", "--vni", "1", "--port", "4792"}, "--listen-any"},
		{[]string{"--remote", "10.94.0.2", "--vni", "1", "--port", "70000"}, "65535"},
		{[]string{"--remote", "10.94.0.2", "--vni", "1", "--port", "4791", "--local", "10.94.0.9"}, "not an address of this host"},
	} {
		out, err := a.Run(append([]string{"ctrl", "add", "tux", "vxlan", "bad"}, c.args...)...)
		out = strings.TrimSpace(out)
		if err == nil || !strings.Contains(out, c.want) || strings.Contains(out, "\n") {
			t.Errorf("add tux vxlan %v: err %v, output %q; want one line with %q", c.args, err, out, c.want)
		}
	}
	after := a.MustRun("ctrl", "list", "--json")
	if strings.Contains(after, `"bad"`) || strings.Count(after, `"kind": "tux"`) != strings.Count(before, `"kind": "tux"`) {
		t.Fatalf("a failed add left something:\n%s", after)
	}
}

// TestVXLANLinux: our vxlan tux and a Linux vxlan device (in its own
// namespace, the other "host") exchange frames both ways: pings each way
// and iperf3 each way. The guest side uses the MTU the docs advise over a
// 1500-byte underlay (1450), as the Linux device does by itself.
func TestVXLANLinux(t *testing.T) {
	needE2E(t)
	sfx := tuxSuffix()
	nsS, nsL := tuxNetns(t, "clxxs"+sfx), tuxNetns(t, "clxxl"+sfx)
	vxUnderlay(t, sfx, nsS, nsL, "10.96.0.1", "10.96.0.2", 1500)
	s := startSwitchIn(t, nsS, "pw-s"+sfx)
	s.MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", "10.96.0.2", "--vni", "77", "--local", "10.96.0.1")
	s.MustRun("ctrl", "attach", "vx", "lan")
	sh(t, fmt.Sprintf("ip netns exec %s ip link add vxl type vxlan id 77 remote 10.96.0.1 local 10.96.0.2 dstport 4789 dev clxxb%s && ip netns exec %s ip addr add 10.97.0.2/24 dev vxl && ip netns exec %s ip link set vxl up", nsL, sfx, nsL, nsL))
	// Over a veth the kernel never completes the inner TCP/UDP checksums
	// it leaves to the NIC (CHECKSUM_PARTIAL); a real NIC, or this, does.
	sh(t, "ip netns exec "+nsL+" ethtool -K vxl tx off >/dev/null")
	if out := sh(t, "ip netns exec "+nsL+" ip link show vxl"); !strings.Contains(out, "mtu 1450") {
		t.Fatalf("Linux vxlan device: %s", out)
	}
	g := tuxNetns(t, "clxxg"+sfx)
	vxTapIn(t, s, nsS, "tp", "clxxt"+sfx, "lan", g, "10.97.0.1", 1450)
	Eventually(t, 10*time.Second, "ping from the guest side to the Linux vxlan device", vxPing(g, "10.97.0.2"))
	Eventually(t, 10*time.Second, "ping from the Linux vxlan device to the guest side", vxPing(nsL, "10.97.0.1"))
	up := vxIperf(t, g, nsL, "10.97.0.2", 2, false)
	down := vxIperf(t, g, nsL, "10.97.0.2", 2, true)
	t.Logf("iperf3 to the Linux vxlan device %.2f Gbit/s, from it %.2f Gbit/s", up, down)
	if up < 0.01 || down < 0.01 {
		t.Fatalf("iperf3 with a Linux vxlan device: %.3f / %.3f Gbit/s", up, down)
	}
	// The Linux device learnt our guest's MAC behind our tux.
	fdb := sh(t, "ip netns exec "+nsL+" bridge fdb show dev vxl")
	if !strings.Contains(fdb, "dst 10.96.0.1") {
		t.Errorf("Linux fdb has no entry behind 10.96.0.1:\n%s", fdb)
	}
	if x := s.tux("vx"); x.Counters.Drops != 0 || x.Counters.RxFrames == 0 || x.Counters.TxFrames == 0 {
		t.Fatalf("vxlan tux with a Linux peer: %+v", x)
	}
}

// TestVXLANGuests: one topology folder per host, each a busybox guest on
// a lan with a <TUX> of type vxlan to the other host. The guests (MTU
// 1450 over a 1500-byte underlay, as docs/multi-host.md advises) ping
// and a 4 MiB transfer arrives intact; fconf save writes the vxlan
// options back.
func TestVXLANGuests(t *testing.T) {
	needE2E(t)
	if _, err := os.Stat(filepath.Join(bulkDir, "busybox.img")); err != nil {
		t.Fatalf("no busybox image in %s (make images, or set CLOONIX_BULK): %v", bulkDir, err)
	}
	sfx := tuxSuffix()
	nsA, nsB := tuxNetns(t, "clxxa"+sfx), tuxNetns(t, "clxxb"+sfx)
	vxUnderlay(t, sfx, nsA, nsB, "10.98.0.1", "10.98.0.2", 1500)
	a, b := startSwitchIn(t, nsA, "pw-a"+sfx), startSwitchIn(t, nsB, "pw-b"+sfx)
	folder := func(vm, ip, local, remote string) string {
		d := t.TempDir()
		topo := fmt.Sprintf(`<TOPOLOGY>
  <config_path> . </config_path>
  <VM> <name> %s </name> <type> UML </type> <mem> 128 </mem> <rootfs> busybox </rootfs>
       <eth> <vlan> lan_x </vlan> </eth> </VM>
  <TUX> <name> vx </name> <type> vxlan </type> <vlan> lan_x </vlan>
        <remote> %s </remote> <vni> 3000 </vni> <port> 4789 </port> <local> %s </local> </TUX>
</TOPOLOGY>
`, vm, remote, local)
		rc := filepath.Join(d, "files_to_add_in_"+vm, "etc", "rc.d")
		if err := os.MkdirAll(rc, 0o755); err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\nip link set eth0 mtu 1450 up\nip addr add %s/24 dev eth0\n", ip)
		if err := os.WriteFile(filepath.Join(rc, "S10_vxlan_lan"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "topology"), []byte(topo), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a.load(folder("GA", "10.99.0.1", "10.98.0.1", "10.98.0.2"))
	b.load(folder("GB", "10.99.0.2", "10.98.0.2", "10.98.0.1"))
	if !a.pings("GA", "10.99.0.2") || !b.pings("GB", "10.99.0.1") {
		t.Fatal("the guests do not ping each other across vxlan")
	}
	// A bulk transfer: 4 MiB of random bytes, compared by checksum.
	// The sink reads until the sender closes (nc -l alone would stop at
	// its own stdin's end).
	b.mustExec("GB", "sh", "-c", `printf '#!/bin/sh\ncat > /tmp/rx\n' > /tmp/sink && chmod +x /tmp/sink && (nc -l -p 5001 -e /tmp/sink </dev/null >/dev/null 2>&1 &)`)
	time.Sleep(500 * time.Millisecond)
	a.mustExec("GA", "sh", "-c", "dd if=/dev/urandom of=/tmp/tx bs=1024 count=4096 2>/dev/null && nc 10.99.0.2 5001 < /tmp/tx")
	want := strings.Fields(a.mustExec("GA", "md5sum", "/tmp/tx"))[0]
	Eventually(t, 30*time.Second, "4 MiB across vxlan", func() error {
		out, err := b.exec("GB", "md5sum", "/tmp/rx")
		if err != nil {
			return err
		}
		if got := strings.Fields(out)[0]; got != want {
			return fmt.Errorf("received md5 %s, sent %s", got, want)
		}
		return nil
	})
	if x := a.tux("vx"); x.Counters.TxBytes < 4<<20 || x.Counters.Drops != 0 {
		t.Fatalf("vxlan tux after the transfer: %+v", x)
	}
	saved := filepath.Join(t.TempDir(), "saved")
	a.MustRun("fconf", "save", saved)
	s := mustRead(t, saved)
	for _, w := range []string{"<type> vxlan </type>", "<remote> 10.98.0.2 </remote>", "<vni> 3000 </vni>", "<port> 4789 </port>", "<local> 10.98.0.1 </local>", "<vlan> lan_x </vlan>"} {
		if !strings.Contains(s, w) {
			t.Errorf("fconf save lacks %s:\n%s", w, s)
		}
	}
	// Loading what was saved changes nothing.
	if plan := a.MustRun("fconf", "load", saved, "--plan"); !strings.Contains(plan, "nothing to change") {
		t.Errorf("the saved file does not match the running lab:\n%s\nplan:\n%s", s, plan)
	}
}

// TestVXLANThreeHostsIPv6: three hosts on one IPv6 underlay (a bridge in
// a fourth namespace), each switch with one vxlan tux listing the two
// others. Every guest pings every other (broadcast ARP replicated to both
// remotes); once MACs are learnt, unicast between A and B no longer
// reaches C.
func TestVXLANThreeHostsIPv6(t *testing.T) {
	needE2E(t)
	sfx := tuxSuffix()
	net0 := tuxNetns(t, "clxxn"+sfx)
	sh(t, "ip netns exec "+net0+" ip link add br0 type bridge && ip netns exec "+net0+" ip link set br0 up")
	names := []string{"a", "b", "c"}
	hosts := make([]string, 3)
	labs := make([]*Lab, 3)
	guests := make([]string, 3)
	for i, n := range names {
		hosts[i] = tuxNetns(t, "clxx"+n+sfx)
		h, u := "clxxh"+n+sfx, "clxxu"+n+sfx
		sh(t, fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s netns %s && ip link set %s netns %s", h, u, h, hosts[i], u, net0))
		sh(t, fmt.Sprintf("ip netns exec %s ip link set %s master br0 up", net0, u))
		sh(t, fmt.Sprintf("ip netns exec %s ip -6 addr add fd00:95::%d/64 dev %s nodad && ip netns exec %s ip link set %s mtu 1600 up", hosts[i], i+1, h, hosts[i], h))
		sh(t, fmt.Sprintf("ip netns exec %s ip link set %s mtu 1600", net0, u))
	}
	for i := range names {
		var remotes []string
		for j := range names {
			if j != i {
				remotes = append(remotes, fmt.Sprintf("fd00:95::%d", j+1))
			}
		}
		labs[i] = startSwitchIn(t, hosts[i], "pw-"+names[i]+sfx)
		labs[i].MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", strings.Join(remotes, ","), "--vni", "6000", "--local", fmt.Sprintf("fd00:95::%d", i+1))
		labs[i].MustRun("ctrl", "attach", "vx", "lan")
		guests[i] = tuxNetns(t, "clxxg"+names[i]+sfx)
		// No IPv6 chatter (router solicitations, MLD) from the guests: the
		// count below is about unicast.
		sh(t, "ip netns exec "+guests[i]+" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
		vxTapIn(t, labs[i], hosts[i], "tp", "clxxt"+names[i]+sfx, "lan", guests[i], fmt.Sprintf("10.102.0.%d", i+1), 1500)
	}
	for i := range names {
		for j := range names {
			if i != j {
				Eventually(t, 15*time.Second, fmt.Sprintf("ping %s -> %s", names[i], names[j]), vxPing(guests[i], fmt.Sprintf("10.102.0.%d", j+1)))
			}
		}
	}
	rx := func(i int) uint64 { return labs[i].tux("vx").Counters.RxFrames }
	b0, c0 := rx(1), rx(2)
	sh(t, "ip netns exec "+guests[0]+" busybox ping -c 50 -i 0.02 -W 1 10.102.0.2 >/dev/null")
	b1, c1 := rx(1), rx(2)
	t.Logf("50 pings A->B: B received %d frames, C %d", b1-b0, c1-c0)
	if b1-b0 < 50 || c1-c0 > 5 {
		t.Fatalf("50 pings A->B: B's tux received %d frames, C's %d (want >= 50 and about none)", b1-b0, c1-c0)
	}
	if x := labs[0].tux("vx"); x.Opts["remote"] != "fd00:95::2,fd00:95::3" || x.Counters.Drops != 0 {
		t.Fatalf("A's tux: %+v", x)
	}
}

// TestVXLANUnprivileged: two switches run as nobody with no capability at
// all, on loopback (127.0.0.1 and 127.0.0.2, one UDP port), joined by
// vxlan tux; test programs on raw stream ports ping each other through
// them. The helpers hold nothing but their UDP socket.
func TestVXLANUnprivileged(t *testing.T) {
	needE2E(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed for this test")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	// The test's binary sits in a directory only root may enter.
	bdir, err := os.MkdirTemp("/tmp", "clxub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bdir) })
	os.Chmod(bdir, 0o755)
	ubin := filepath.Join(bdir, "cloonix")
	sh(t, "cp "+bin+" "+ubin+" && chmod 755 "+ubin)
	start := func(name string) *Lab {
		dir, err := os.MkdirTemp("/tmp", "clxu")
		if err != nil {
			t.Fatal(err)
		}
		os.Chown(dir, 65534, 65534) // nobody's work_dir: its own (a switch refuses one open to others)
		t.Cleanup(func() { os.RemoveAll(dir) })
		l := &Lab{t: t, Dir: dir, Config: filepath.Join(dir, "config.xml"), Sock: filepath.Join(dir, "ctl.sock"), Pass: "p"}
		os.WriteFile(l.Config, []byte(fmt.Sprintf(`<cloonix_config><network_name>vxu-%s</network_name><server_name>%s</server_name>
<server_port>%d</server_port><password>p</password><work_dir>%s</work_dir><bulk_dir>%s</bulk_dir><no_nat>true</no_nat><mgmt>off</mgmt></cloonix_config>`,
			name, l.Sock, freePort(t), dir, dir)), 0o644)
		out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", ubin, "-c", l.Config, "start").CombinedOutput()
		if err != nil {
			t.Fatalf("start as nobody without capabilities: %v\n%s", err, out)
		}
		t.Cleanup(func() { _, _ = l.Run("stop") }) // runs before the removal
		return l
	}
	a, b := start("a"), start("b")
	a.MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", "127.0.0.2", "--local", "127.0.0.1", "--vni", "9", "--port", port)
	a.MustRun("ctrl", "attach", "vx", "lan")
	b.MustRun("ctrl", "add", "tux", "vxlan", "vx", "--remote", "127.0.0.1", "--local", "127.0.0.2", "--vni", "9", "--port", port)
	b.MustRun("ctrl", "attach", "vx", "lan")
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.tux("vx").Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+65534\s`).Match(st) || !regexp.MustCompile(`(?m)^CapEff:\s+0+$`).Match(st) {
		t.Fatalf("the vxlan helper is not unprivileged:\n%s", st)
	}
	pa, pb := a.rawPort(t, "p1", "lan", 1), b.rawPort(t, "p2", "lan", 2)
	ping(t, pa, pb, 3)
	ping(t, pb, pa, 3)
	if x := b.tux("vx"); x.Counters.RxFrames < 6 || x.Counters.TxFrames < 6 || x.Counters.Drops != 0 {
		t.Fatalf("B's tux: %+v", x)
	}
}
