// Package hostsh runs the shell commands the host-side benchmarks need
// (namespaces, veths, iperf3) and undoes them at the end, last first.
package hostsh

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Tag prefixes every name a benchmark creates, so runs never collide
// with each other or with tests. Set it once at start.
var Tag = fmt.Sprintf("b%d", os.Getpid()%100000)

var undo []string

// The sender's TCP congestion control changes what these benchmarks
// measure, peers included: this machine's kernel defaults to bbr, whose
// pacing holds a Linux vxlan device pair near 12 Gbit/s where cubic
// (Debian's default) reaches 45. Every run names it; -cc picks it.
var ccFlag = flag.String("cc", "", "TCP congestion control of the iperf3 senders (default: the machine's, net.ipv4.tcp_congestion_control)")

// CC is the congestion control the iperf3 senders use.
func CC() string {
	if *ccFlag != "" {
		return *ccFlag
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		return "cubic"
	}
	return strings.TrimSpace(string(b))
}

// Sh runs cmd with sh -c and returns its combined output.
func Sh(cmd string) (string, error) {
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return string(out), nil
}

// Must runs cmd and, when it fails, undoes everything and exits.
func Must(cmd string) string {
	out, err := Sh(cmd)
	if err != nil {
		Fail(err)
	}
	return out
}

// Fail undoes everything, says err and exits.
func Fail(err error) {
	Cleanup()
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// Undo registers cmd to run at Cleanup.
func Undo(cmd ...string) { undo = append(undo, cmd...) }

// Cleanup runs the registered commands, last first.
func Cleanup() {
	for i := len(undo) - 1; i >= 0; i-- {
		_, _ = Sh(undo[i])
	}
	undo = nil
}

// Netns makes namespace Tag+name with lo up; Cleanup deletes it.
func Netns(name string) string {
	ns := Tag + name
	Must("ip netns add " + ns)
	Undo("ip netns del " + ns)
	Must("ip netns exec " + ns + " ip link set lo up")
	return ns
}

// In is the command prefix that runs a command in namespace ns.
func In(ns string) string { return "ip netns exec " + ns + " " }

// Place moves an interface into ns with an address (/24) and brings it
// up.
func Place(ifname, ns, addr string) { PlaceFrom("", ifname, ns, addr) }

// PlaceFrom is Place for an interface that is where prefix runs a
// command (In(NS) for one in namespace NS).
func PlaceFrom(prefix, ifname, ns, addr string) {
	Must(fmt.Sprintf("%sip link set %s netns %s && ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s up", prefix, ifname, ns, ns, addr, ifname, ns, ifname))
}

// Bridge makes Linux bridge Tag+name, up; Cleanup deletes it.
func Bridge(name string) string {
	br := Tag + name
	Must("ip link add " + br + " type bridge && ip link set " + br + " up")
	Undo("ip link del " + br)
	return br
}

// BridgedPair is two namespaces, Tag+"brA" and Tag+"brB", joined by a
// Linux bridge with veth pairs (the kernel's own path), at NET.1 and
// NET.2 (net is the /24's first three bytes).
func BridgedPair(net string) (a, b string) {
	a, b = Netns("brA"), Netns("brB")
	br := Bridge("br")
	for _, x := range []struct{ ns, ip, s string }{{a, net + ".1", "a"}, {b, net + ".2", "b"}} {
		h, n := Tag+"h"+x.s, Tag+"n"+x.s
		Must(fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s master %s up", h, n, h, br))
		Place(n, x.ns, x.ip)
	}
	return a, b
}

var gbitRe = regexp.MustCompile(`([0-9.]+) ([GMK])bits/sec\s+receiver`)

// Iperf runs iperf3 for secs seconds from nsA to a one-shot server in
// nsB at addr, once the path answers a ping; Gbit/s at the receiver.
// When the client fails it undoes everything and exits.
func Iperf(nsA, nsB, addr string, secs int) float64 {
	v, err := IperfVia(In(nsA), In(nsB), addr, secs)
	if err != nil {
		Fail(err)
	}
	return v
}

// IperfVia is Iperf between two command prefixes (in runs the client,
// out the server: "ip netns exec NS ", "nsenter -t PID -n "...). The
// error is the client's; without a receiver rate in its output it shows
// the output and gives 0.
func IperfVia(in, out, addr string, secs int) (float64, error) {
	// The namespaces' default, as on a machine set that way, not
	// iperf3's -C: with -C cubic the vxlan case gave 7.4-7.7 Gbit/s
	// where the namespaces' default cubic gave 9.2-10.9 (2026-12-07).
	for _, ns := range []string{in, out} {
		Must(fmt.Sprintf("%ssysctl -qw net.ipv4.tcp_congestion_control=%s", ns, CC()))
	}
	pidf := fmt.Sprintf("/tmp/%s-iperf.pid", Tag)
	Must(fmt.Sprintf("%siperf3 -s -1 -D -I %s", out, pidf))
	defer Sh(fmt.Sprintf("kill $(cat %s) 2>/dev/null; rm -f %s", pidf, pidf))
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 50; i++ {
		if _, err := Sh(fmt.Sprintf("%sbusybox ping -c 1 -W 1 %s", in, addr)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := Sh(fmt.Sprintf("%siperf3 -c %s -t %d", in, addr, secs))
	if err != nil {
		return 0, err
	}
	v, ok := Gbits(res)
	if !ok {
		fmt.Fprintln(os.Stderr, res)
	}
	return v, nil
}

// Gbits is the receiver's rate (Gbit/s) in iperf3's output; false when
// there is none.
func Gbits(out string) (float64, bool) {
	m := gbitRe.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "M":
		v /= 1000
	case "K":
		v /= 1e6
	}
	return v, true
}
