// Command cnt measures TCP throughput (iperf3) between two container
// nodes (--type cnt, rootfs debian-frr by default) on one lan of a
// switch, against two network namespaces on a Linux bridge with veth
// pairs (the kernel's own path) and, for reference, two namespaces on
// the same kind of switch through tap tuxes, in the same run; rounds
// take turns over the paths, and it prints the median and range of each
// with the ratios of medians.
//
// iperf3 is the host's binary on every path, run in the node's network
// namespace (nsenter -n) for the container nodes: the bytes take the
// node's path (its eth0, the switch-made tap, the switch) whatever the
// rootfs holds, and both sides use the same program. Run as root:
// `go run ./bench/cnt` (flags: -t seconds, -rounds N, -rootfs R). Every
// name it creates carries its pid, and it removes them all when done.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/tabwriter"
	"time"

	"cloonix/bench/internal/hostsh"
	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
	"cloonix/internal/proto"
)

var (
	secs   = flag.Int("t", 5, "iperf3 seconds per case")
	rounds = flag.Int("rounds", 3, "rounds over all paths")
	rootfs = flag.String("rootfs", "debian-frr", "the cnt nodes' rootfs")
	bulk   = flag.String("bulk", "", "bulk_dir (default $CLOONIX_BULK or ~/cloonix_labs/bulk)")
	binArg = flag.String("bin", "", "cloonix binary (default: build one)")
	other  = flag.String("other", "", "another cloonix binary (e.g. an older commit's): its cnt nodes join the rounds, on a switch of their own")
)

// path is one way between two network contexts: in runs a command in
// the client's, out in the server's.
type path struct {
	name    string
	in, out string // command prefixes
	addr    string
	gbits   stats.Series
}

func main() {
	flag.Parse()
	hostsh.Tag = fmt.Sprintf("cb%d", os.Getpid()%100000)
	*bulk = benchlab.Bulk(*bulk)
	for _, tool := range []string{"iperf3", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "bench/cnt: %s is missing (apt-get install iperf3 util-linux iproute2)\n", tool)
			os.Exit(1)
		}
	}
	bin, done := benchlab.Binary(*binArg)
	defer done()
	defer hostsh.Cleanup()
	c, sock := startSwitch(bin, hostsh.Tag, "")
	paths := []*path{bridge(), cnt(c, sock, "c", 75, ""), tapTux(c)}
	if *other != "" {
		// A name and a management network of its own: the two switches share the host.
		oc, osock := startSwitch(*other, hostsh.Tag+"o", "172.31.250.0/24")
		paths = append(paths, cnt(oc, osock, "o", 73, ", -other"))
	}
	fmt.Printf("iperf3 TCP, %d s per case, %d rounds taking turns, TCP congestion control %s, %s, load average %s\n", *secs, *rounds, hostsh.CC(), time.Now().UTC().Format(time.RFC3339), stats.Load())
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			v, err := hostsh.IperfVia(p.in, p.out, p.addr, *secs)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			p.gbits.Add(v)
			fmt.Printf("  round %d %-28s %6.2f Gbit/s\n", r+1, p.name, v)
		}
	}
	br := paths[0].gbits.Median()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tmedian Gbit/s\trange\tvs Linux bridge\t")
	for _, p := range paths {
		med := p.gbits.Median()
		fmt.Fprintf(w, "%s\t%.2f\t%s\t%s\t\n", p.name, med, p.gbits.Range(2), stats.Ratio(med, br))
	}
	w.Flush()
	cx := paths[1].gbits.Median()
	fmt.Printf("target (medians): cnt >= 0.5x Linux bridge: %v; load average after: %s\n", br > 0 && cx/br >= 0.5, stats.Load())
}

func bridge() *path {
	a, b := hostsh.BridgedPair("10.76.0")
	return &path{name: "Linux bridge (veth)", in: hostsh.In(a), out: hostsh.In(b), addr: "10.76.0.2"}
}

// cnt adds two container nodes on one lan; commands run in their
// network namespaces through their init's pid.
func cnt(c, sock, prefix string, net int, label string) *path {
	var pre [2]string
	for i, n := range []string{prefix + "1", prefix + "2"} {
		hostsh.Must(fmt.Sprintf("%s ctrl add vm %s --type cnt --rootfs %s --eth 1 --wait && %s ctrl attach %s:eth0 lan", c, n, *rootfs, c, n))
		hostsh.Must(fmt.Sprintf("%s exec %s -- ip addr add 10.%d.0.%d/24 dev eth0", c, n, net, i+1))
		hostsh.Must(fmt.Sprintf("%s exec %s -- ip link set eth0 up", c, n))
		pid := nodePid(sock, n)
		if pid <= 0 {
			hostsh.Cleanup()
			fmt.Fprintf(os.Stderr, "bench/cnt: no pid for node %s\n", n)
			os.Exit(1)
		}
		pre[i] = fmt.Sprintf("nsenter -t %d -n ", pid)
	}
	return &path{name: "cloonix cnt nodes (" + *rootfs + label + ")", in: pre[0], out: pre[1], addr: fmt.Sprintf("10.%d.0.2", net)}
}

// tapTux is the switch between two namespaces through tap tuxes (vnet
// headers and offloads): what the switch's taps reach when they carry
// TCP super frames.
func tapTux(c string) *path {
	a, b := hostsh.Netns("txA"), hostsh.Netns("txB")
	for _, x := range []struct{ ns, ip, s string }{{a, "10.74.0.1", "a"}, {b, "10.74.0.2", "b"}} {
		ifn := hostsh.Tag + "t" + x.s
		hostsh.Must(fmt.Sprintf("%s ctrl add tux tap t%s --ifname %s && %s ctrl attach t%s lan2", c, x.s, ifn, c, x.s))
		hostsh.Place(ifn, x.ns, x.ip)
	}
	return &path{name: "cloonix tap tuxes (netns)", in: hostsh.In(a), out: hostsh.In(b), addr: "10.74.0.2"}
}

// nodePid is the pid of node name's init, from the switch's list.
func nodePid(sock, name string) int {
	c, err := proto.Dial("unix:"+sock, "")
	if err != nil {
		return 0
	}
	defer c.Close()
	lab, err := c.List()
	if err != nil {
		return 0
	}
	for _, v := range lab.VMs {
		if v.Name == name {
			return v.Pid
		}
	}
	return 0
}

// startSwitch starts a switch named name with the management network mgmt
// ("" for the default; a second switch needs another); it returns the
// command line that reaches it and its control socket.
func startSwitch(bin, name, mgmt string) (string, string) {
	c, dir := benchlab.StartSh(bin, "", benchlab.Config{Name: name, Bulk: *bulk, Mgmt: true, MgmtNet: mgmt})
	return c, filepath.Join(dir, "ctl.sock")
}
