// Command vxlan measures TCP throughput (iperf3) across two "hosts" (two
// network namespaces joined by a veth pair, the underlay), in one run:
//
//   - Linux: two Linux vxlan devices, one per host namespace, the kernel's
//     own path (iperf3 runs on the vxlan devices themselves);
//   - Linux, bridged: the same devices, each in a bridge with a veth to a
//     guest namespace where iperf3 runs: the cloonix cases' endpoints;
//   - cloonix vxlan: a switch in each host namespace, joined by vxlan tux;
//     iperf3 runs in two more namespaces, each on a tap tux of a switch;
//   - cloonix t2t: the same, joined by t2t tux (TCP) instead.
//
// Every case has an inner MTU of 1500 and the same underlay: a veth pair
// with MTU 1550, so a VXLAN datagram (frame + 50) is never fragmented.
// The cases take turns for -n rounds (the machine's load changes); it
// prints a table of medians and ranges, and for the cloonix cases the CPU
// time the two switch processes spent per GB carried (t2t's helper
// processes, which carry its data, are not counted): a cost per byte that
// a loaded machine changes less than the rate. Run as root: `go run ./bench/vxlan`
// (flags: -t seconds, -n rounds, -cases, -bin cloonix, -short). Every name it creates carries its pid, and it
// removes them all when done.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"cloonix/bench/internal/hostsh"
	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
)

var (
	secs   = flag.Int("t", 10, "iperf3 seconds per case")
	binArg = flag.String("bin", "", "cloonix binary (default: build one)")
	cases  = flag.String("cases", "linux,linuxbr,vxlan,t2t", "which cases to run (and tapvx: a tap tux joined to a Linux vxlan device)")
	rounds = flag.Int("n", 3, "rounds; the cases take turns, the table shows the median and the range")
	short  = flag.Bool("short", false, "smoke run: 1 s, one round")
)

// underlay joins two host namespaces with a veth pair (MTU 1550):
// 10.88.0.1 in a, 10.88.0.2 in b. It returns the interface names.
func underlay(a, b string) (string, string) {
	va, vb := hostsh.Tag+"ua", hostsh.Tag+"ub"
	hostsh.Must(fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s netns %s && ip link set %s netns %s", va, vb, va, a, vb, b))
	hostsh.Must(fmt.Sprintf("ip netns exec %s ip addr add 10.88.0.1/24 dev %s && ip netns exec %s ip link set %s mtu 1550 up", a, va, a, va))
	hostsh.Must(fmt.Sprintf("ip netns exec %s ip addr add 10.88.0.2/24 dev %s && ip netns exec %s ip link set %s mtu 1550 up", b, vb, b, vb))
	return va, vb
}

func linuxVXLAN() float64 {
	a, b := hostsh.Netns("lxA"), hostsh.Netns("lxB")
	defer hostsh.Cleanup()
	va, vb := underlay(a, b)
	for _, x := range []struct{ ns, dev, local, remote, ip string }{{a, va, "10.88.0.1", "10.88.0.2", "10.89.0.1"}, {b, vb, "10.88.0.2", "10.88.0.1", "10.89.0.2"}} {
		linuxVX(hostsh.In(x.ns), "vx", x.local, x.remote, x.dev)
		hostsh.Must(fmt.Sprintf("%sip addr add %s/24 dev vx", hostsh.In(x.ns), x.ip))
	}
	return hostsh.Iperf(a, b, "10.89.0.2", *secs)
}

// linuxVX makes Linux vxlan device name where prefix in runs a command
// (hostsh.In(NS)), up, with every case's VNI, port and inner MTU; dev is
// its underlay interface ("" to let the route choose).
func linuxVX(in, name, local, remote, dev string) {
	cmd := fmt.Sprintf("%sip link add %s type vxlan id 100 local %s remote %s dstport 4789", in, name, local, remote)
	if dev != "" {
		cmd += " dev " + dev
	}
	hostsh.Must(fmt.Sprintf("%s && %sip link set %s mtu 1500 up", cmd, in, name))
}

// linuxBridged is the Linux case with the cloonix cases' endpoints: in
// each host a bridge joins the vxlan device to a veth whose other end is
// in a guest namespace, where iperf3 runs (a lab's guests behind Linux
// vxlan devices, as containerlab's vxlan-stitch links place them).
func linuxBridged() float64 {
	a, b := hostsh.Netns("lbA"), hostsh.Netns("lbB")
	ga, gb := hostsh.Netns("lbgA"), hostsh.Netns("lbgB")
	defer hostsh.Cleanup()
	va, vb := underlay(a, b)
	for _, x := range []struct{ ns, g, dev, local, remote, ip, s string }{{a, ga, va, "10.88.0.1", "10.88.0.2", "10.90.0.1", "a"}, {b, gb, vb, "10.88.0.2", "10.88.0.1", "10.90.0.2", "b"}} {
		in := hostsh.In(x.ns)
		h, n := hostsh.Tag+"lh"+x.s, hostsh.Tag+"ln"+x.s
		linuxVX(in, "vx", x.local, x.remote, x.dev)
		hostsh.Must(fmt.Sprintf("%sip link add vbr type bridge && %sip link set vx master vbr && %sip link set vbr up", in, in, in))
		hostsh.Must(fmt.Sprintf("%sip link add %s type veth peer name %s && %sip link set %s master vbr up", in, h, n, in, h))
		hostsh.PlaceFrom(in, n, x.g, x.ip)
	}
	return hostsh.Iperf(ga, gb, "10.90.0.2", *secs)
}

// startSwitch starts a switch with its own config inside namespace ns;
// it returns the switch's command and its pid file.
func startSwitch(bin, name, ns string) (string, string) {
	c, dir := benchlab.StartSh(bin, hostsh.In(ns), benchlab.Config{Name: name})
	return c, filepath.Join(dir, "switch.pid")
}

// cpuSeconds is the user and system CPU time the processes of the pid
// files have used so far (/proc/PID/stat, clock ticks of 1/100 s).
func cpuSeconds(pidFiles ...string) float64 {
	var t float64
	for _, pf := range pidFiles {
		pid, _ := os.ReadFile(pf)
		st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime, stime
		// are the 12th and 13th.
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			k, _ := strconv.ParseFloat(f[12], 64)
			t += (u + k) / 100
		}
	}
	return t
}

// twoSwitches builds the cloonix cases: a switch per host namespace,
// joined by the tux that link adds (given both switches' commands), and
// a guest namespace on a tap of each; iperf3 between the guests. It
// returns Gbit/s and the two switches' CPU seconds per GB carried (what
// the path costs, less dependent on the machine's load than the rate).
func twoSwitches(bin, name string, link func(c1, c2, a, b string)) (float64, float64) {
	a, b := hostsh.Netns(name+"A"), hostsh.Netns(name+"B")
	ga, gb := hostsh.Netns(name+"gA"), hostsh.Netns(name+"gB")
	defer hostsh.Cleanup()
	underlay(a, b)
	c1, p1 := startSwitch(bin, hostsh.Tag+name+"1", a)
	c2, p2 := startSwitch(bin, hostsh.Tag+name+"2", b)
	link(c1, c2, a, b)
	for _, x := range []struct{ c, ns, g, ip, s string }{{c1, a, ga, "10.90.0.1", "a"}, {c2, b, gb, "10.90.0.2", "b"}} {
		ifn := hostsh.Tag + name + x.s
		hostsh.Must(fmt.Sprintf("%s ctrl add tux tap tp --ifname %s && %s ctrl attach tp lan", x.c, ifn, x.c))
		hostsh.PlaceFrom(hostsh.In(x.ns), ifn, x.g, x.ip)
	}
	cpu0 := cpuSeconds(p1, p2)
	g := hostsh.Iperf(ga, gb, "10.90.0.2", *secs)
	cpu := cpuSeconds(p1, p2) - cpu0
	if g <= 0 {
		return 0, 0
	}
	return g, cpu / (g * float64(*secs) / 8)
}

// tuxCase is a cloonix case: the tux that joins the two switches.
type tuxCase struct {
	name, ns   string                    // its -cases name; its namespaces' and switches' infix
	label, row string                    // its name in the round lines and in the table
	link       func(c1, c2, a, b string) // switches' commands, their namespaces
	gbits, cpu stats.Series
}

func tuxCases() []*tuxCase {
	// add runs "ctrl add tux KIND link ARGS" on switch c and attaches it.
	add := func(c, args string) { hostsh.Must(c + " ctrl add tux " + args + " && " + c + " ctrl attach link lan") }
	return []*tuxCase{
		{name: "vxlan", ns: "vx", label: "cloonix vxlan", row: "cloonix vxlan tux (2 switches, taps)", link: func(c1, c2, _, _ string) {
			add(c1, "vxlan link --remote 10.88.0.2 --local 10.88.0.1 --vni 100")
			add(c2, "vxlan link --remote 10.88.0.1 --local 10.88.0.2 --vni 100")
		}},
		{name: "t2t", ns: "tt", label: "cloonix t2t", row: "cloonix t2t tux (2 switches, taps)", link: func(c1, c2, _, _ string) {
			add(c2, "t2t link --listen 10.88.0.2:7301 --password p")
			add(c1, "t2t link --peer 10.88.0.2:7301 --password p")
		}},
		// Not a tux kind: what the kernel's vxlan datapath would give a
		// vxlan tux (the switch's tap joined to a Linux vxlan device by
		// tc redirects), measured before anyone builds it. Off by default.
		{name: "tapvx", ns: "kv", label: "tap+Linux vx", row: "tap tux + Linux vxlan device (tc redirect; a prototype)", link: func(c1, c2, a, b string) {
			tapToVXLAN(c1, a, "10.88.0.1", "10.88.0.2", "1")
			tapToVXLAN(c2, b, "10.88.0.2", "10.88.0.1", "2")
		}},
	}
}

// tapToVXLAN joins a tap tux of switch c (in namespace ns) to a Linux
// vxlan device there: each one's received frames go out of the other
// (tc u32 match-all and mirred, which this kernel has; no flower or
// matchall here).
func tapToVXLAN(c, ns, local, remote, s string) {
	tp, vx := hostsh.Tag+"kt"+s, hostsh.Tag+"kx"+s
	in := hostsh.In(ns)
	hostsh.Must(fmt.Sprintf("%s ctrl add tux tap link --ifname %s && %s ctrl attach link lan", c, tp, c))
	linuxVX(in, vx, local, remote, "")
	for _, x := range [][2]string{{tp, vx}, {vx, tp}} {
		hostsh.Must(fmt.Sprintf("%stc qdisc add dev %s clsact && %stc filter add dev %s ingress protocol all u32 match u32 0 0 action mirred egress redirect dev %s", in, x[0], in, x[0], x[1]))
	}
}

func main() {
	flag.Parse()
	if *short {
		*secs, *rounds = 1, 1
	}
	bin, done := benchlab.Binary(*binArg)
	defer done()
	fmt.Printf("bench/vxlan: iperf3 TCP, one stream, %d s per case, %d rounds taking turns, inner MTU 1500, veth underlay MTU 1550, TCP congestion control %s\nhost: %s\n", *secs, *rounds, hostsh.CC(), stats.Host())
	run := func(name string) bool { return strings.Contains(","+*cases+",", ","+name+",") }
	var lx, lb stats.Series
	tuxes := tuxCases()
	for r := 0; r < *rounds; r++ {
		if run("linux") {
			lx.Add(linuxVXLAN())
			fmt.Printf("  round %d Linux vxlan   %6.2f Gbit/s\n", r+1, lx[len(lx)-1])
		}
		if run("linuxbr") {
			lb.Add(linuxBridged())
			fmt.Printf("  round %d Linux vx+br   %6.2f Gbit/s\n", r+1, lb[len(lb)-1])
		}
		for _, k := range tuxes {
			if run(k.name) {
				g, c := twoSwitches(bin, k.ns, k.link)
				k.gbits.Add(g)
				k.cpu.Add(c)
				fmt.Printf("  round %d %-13s %6.2f Gbit/s, switches %.2f CPU s/GB\n", r+1, k.label, g, c)
			}
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tGbit/s (median)\tmin-max\tvs Linux vxlan\tswitches' CPU s/GB (median)\t")
	ref := lx.Median()
	row := func(name string, v, cpu stats.Series) {
		if len(v) > 0 {
			c := "-"
			if len(cpu) > 0 {
				c = fmt.Sprintf("%.2f", cpu.Median())
			}
			fmt.Fprintf(w, "%s\t%.2f\t%s\t%s\t%s\t\n", name, v.Median(), v.Range(2), stats.Ratio(v.Median(), ref), c)
		}
	}
	row("Linux vxlan devices (kernel)", lx, nil)
	row("Linux vxlan devices, guests on veths in a bridge", lb, nil)
	for _, k := range tuxes {
		row(k.row, k.gbits, k.cpu)
	}
	w.Flush()
	for _, k := range tuxes {
		if k.name == "vxlan" && len(lb) > 0 && len(k.gbits) > 0 {
			fmt.Printf("cloonix vxlan vs Linux vxlan with bridged guests (same endpoints): %s\n", stats.Ratio(k.gbits.Median(), lb.Median()))
		}
	}
	fmt.Println("load average after:", stats.Load())
	fmt.Println("target (issue 18, medians): cloonix vxlan >= 0.6x Linux vxlan devices")
}
