// Command vxlan measures TCP throughput (iperf3) across two "hosts" (two
// network namespaces joined by a veth pair, the underlay), in one run:
//
//   - Linux: two Linux vxlan devices, one per host namespace, the kernel's
//     own path (iperf3 runs on the vxlan devices themselves);
//   - cloonix vxlan: a switch in each host namespace, joined by vxlan tux;
//     iperf3 runs in two more namespaces, each on a tap tux of a switch;
//   - cloonix t2t: the same, joined by t2t tux (TCP) instead.
//
// Every case has an inner MTU of 1500 and the same underlay: a veth pair
// with MTU 1550, so a VXLAN datagram (frame + 50) is never fragmented.
// The cases take turns for -n rounds (the machine's load changes); it
// prints a table of medians and ranges. Run as root: `go run ./bench/vxlan`
// (flags: -t seconds, -n rounds, -cases, -bin cloonix, -short). Every name it creates carries its pid, and it
// removes them all when done.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"cloonix/bench/internal/hostsh"
	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
)

var (
	secs   = flag.Int("t", 10, "iperf3 seconds per case")
	binArg = flag.String("bin", "", "cloonix binary (default: build one)")
	cases  = flag.String("cases", "linux,vxlan,t2t", "which cases to run")
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
		hostsh.Must(fmt.Sprintf("ip netns exec %s ip link add vx type vxlan id 100 remote %s local %s dstport 4789 dev %s && ip netns exec %s ip link set vx mtu 1500 up && ip netns exec %s ip addr add %s/24 dev vx",
			x.ns, x.remote, x.local, x.dev, x.ns, x.ns, x.ip))
	}
	return hostsh.Iperf(a, b, "10.89.0.2", *secs)
}

// startSwitch starts a switch with its own config inside namespace ns.
func startSwitch(bin, name, ns string) string {
	dir, _ := os.MkdirTemp("/tmp", "clxbench")
	cfg := filepath.Join(dir, "config.xml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`<cloonix_config>
  <network_name>%s</network_name>
  <server_name>%s/ctl.sock</server_name>
  <server_port>0</server_port>
  <password>bench-%s</password>
  <work_dir>%s</work_dir>
  <no_nat>true</no_nat>
  <mgmt>off</mgmt>
</cloonix_config>
`, name, dir, hostsh.Tag, dir)), 0o600)
	c := bin + " -c " + cfg
	hostsh.Undo("rm -rf "+dir, c+" stop")
	hostsh.Must("ip netns exec " + ns + " " + c + " start")
	return c
}

// twoSwitches builds the cloonix cases: a switch per host namespace,
// joined by the tux that link adds (given both switches' commands), and
// a guest namespace on a tap of each; iperf3 between the guests.
func twoSwitches(bin, name string, link func(c1, c2 string)) float64 {
	a, b := hostsh.Netns(name+"A"), hostsh.Netns(name+"B")
	ga, gb := hostsh.Netns(name+"gA"), hostsh.Netns(name+"gB")
	defer hostsh.Cleanup()
	underlay(a, b)
	c1, c2 := startSwitch(bin, hostsh.Tag+name+"1", a), startSwitch(bin, hostsh.Tag+name+"2", b)
	link(c1, c2)
	for _, x := range []struct{ c, ns, g, ip, s string }{{c1, a, ga, "10.90.0.1", "a"}, {c2, b, gb, "10.90.0.2", "b"}} {
		ifn := hostsh.Tag + name + x.s
		hostsh.Must(fmt.Sprintf("%s ctrl add tux tap tp --ifname %s && %s ctrl attach tp lan", x.c, ifn, x.c))
		hostsh.Must(fmt.Sprintf("ip netns exec %s ip link set %s netns %s && ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s up", x.ns, ifn, x.g, x.g, x.ip, ifn, x.g, ifn))
	}
	return hostsh.Iperf(ga, gb, "10.90.0.2", *secs)
}

func main() {
	flag.Parse()
	if *short {
		*secs, *rounds = 1, 1
	}
	bin := *binArg
	if bin == "" {
		dir, _ := os.MkdirTemp("", "clxbin")
		defer os.RemoveAll(dir)
		var err error
		if bin, err = benchlab.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Printf("bench/vxlan: iperf3 TCP, one stream, %d s per case, %d rounds taking turns, inner MTU 1500, veth underlay MTU 1550\nhost: %s\n", *secs, *rounds, stats.Host())
	run := func(name string) bool { return strings.Contains(","+*cases+",", ","+name+",") }
	var lx, vx, tt stats.Series
	for r := 0; r < *rounds; r++ {
		if run("linux") {
			lx.Add(linuxVXLAN())
			fmt.Printf("  round %d Linux vxlan   %6.2f Gbit/s\n", r+1, lx[len(lx)-1])
		}
		if run("vxlan") {
			vx.Add(twoSwitches(bin, "vx", func(c1, c2 string) {
				hostsh.Must(c1 + " ctrl add tux vxlan link --remote 10.88.0.2 --local 10.88.0.1 --vni 100 && " + c1 + " ctrl attach link lan")
				hostsh.Must(c2 + " ctrl add tux vxlan link --remote 10.88.0.1 --local 10.88.0.2 --vni 100 && " + c2 + " ctrl attach link lan")
			}))
			fmt.Printf("  round %d cloonix vxlan %6.2f Gbit/s\n", r+1, vx[len(vx)-1])
		}
		if run("t2t") {
			tt.Add(twoSwitches(bin, "tt", func(c1, c2 string) {
				hostsh.Must(c2 + " ctrl add tux t2t link --listen 10.88.0.2:7301 --password p && " + c2 + " ctrl attach link lan")
				hostsh.Must(c1 + " ctrl add tux t2t link --peer 10.88.0.2:7301 --password p && " + c1 + " ctrl attach link lan")
			}))
			fmt.Printf("  round %d cloonix t2t   %6.2f Gbit/s\n", r+1, tt[len(tt)-1])
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tGbit/s (median)\tmin-max\tvs Linux vxlan\t")
	ref := lx.Median()
	row := func(name string, v stats.Series) {
		if len(v) > 0 {
			fmt.Fprintf(w, "%s\t%.2f\t%s\t%s\t\n", name, v.Median(), v.Range(2), stats.Ratio(v.Median(), ref))
		}
	}
	row("Linux vxlan devices (kernel)", lx)
	row("cloonix vxlan tux (2 switches, taps)", vx)
	row("cloonix t2t tux (2 switches, taps)", tt)
	w.Flush()
	fmt.Println("load average after:", stats.Load())
	fmt.Println("target (issue 18, medians): cloonix vxlan >= 0.6x Linux vxlan devices")
}
