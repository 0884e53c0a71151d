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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"cloonix/bench/internal/hostsh"
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
	gbits   []float64
}

func main() {
	flag.Parse()
	hostsh.Tag = fmt.Sprintf("cb%d", os.Getpid()%100000)
	if *bulk == "" {
		*bulk = os.Getenv("CLOONIX_BULK")
	}
	if *bulk == "" {
		home, _ := os.UserHomeDir()
		*bulk = filepath.Join(home, "cloonix_labs", "bulk")
	}
	for _, tool := range []string{"iperf3", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "bench/cnt: %s is missing (apt-get install iperf3 util-linux iproute2)\n", tool)
			os.Exit(1)
		}
	}
	bin := *binArg
	if bin == "" {
		dir, _ := os.MkdirTemp("", "clxbin")
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "cloonix")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/cloonix").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	defer hostsh.Cleanup()
	c, sock := startSwitch(bin)
	paths := []*path{bridge(), cnt(c, sock, "c", 75, ""), tapTux(c)}
	if *other != "" {
		oc, osock := startSwitch(*other)
		paths = append(paths, cnt(oc, osock, "o", 73, ", -other"))
	}
	fmt.Printf("iperf3 TCP, %d s per case, %d rounds taking turns, %s, load average %s\n", *secs, *rounds, time.Now().UTC().Format(time.RFC3339), loadAvg())
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			v := iperf(p, *secs)
			p.gbits = append(p.gbits, v)
			fmt.Printf("  round %d %-28s %6.2f Gbit/s\n", r+1, p.name, v)
		}
	}
	br, _, _ := stats(paths[0].gbits)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tmedian Gbit/s\trange\tvs Linux bridge\t")
	for _, p := range paths {
		med, lo, hi := stats(p.gbits)
		fmt.Fprintf(w, "%s\t%.2f\t%.2f-%.2f\t%.2fx\t\n", p.name, med, lo, hi, ratio(med, br))
	}
	w.Flush()
	cx, _, _ := stats(paths[1].gbits)
	fmt.Printf("target (medians): cnt >= 0.5x Linux bridge: %v; load average after: %s\n", ratio(cx, br) >= 0.5, loadAvg())
}

func bridge() *path {
	a, b := hostsh.Netns("brA"), hostsh.Netns("brB")
	br := hostsh.Tag + "br"
	hostsh.Must("ip link add " + br + " type bridge && ip link set " + br + " up")
	hostsh.Undo("ip link del " + br)
	for _, x := range []struct{ ns, ip, s string }{{a, "10.76.0.1", "a"}, {b, "10.76.0.2", "b"}} {
		h, n := hostsh.Tag+"h"+x.s, hostsh.Tag+"n"+x.s
		hostsh.Must(fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s master %s up", h, n, h, br))
		place(n, x.ns, x.ip)
	}
	return &path{name: "Linux bridge (veth)", in: "ip netns exec " + a + " ", out: "ip netns exec " + b + " ", addr: "10.76.0.2"}
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
		place(ifn, x.ns, x.ip)
	}
	return &path{name: "cloonix tap tuxes (netns)", in: "ip netns exec " + a + " ", out: "ip netns exec " + b + " ", addr: "10.74.0.2"}
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

// place moves an interface into ns with an address and brings it up.
func place(ifname, ns, addr string) {
	hostsh.Must(fmt.Sprintf("ip link set %s netns %s && ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s up", ifname, ns, ns, addr, ifname, ns, ifname))
}

// startSwitch starts a switch of its own; it returns the command line
// that reaches it and its control socket.
func startSwitch(bin string) (string, string) {
	dir, _ := os.MkdirTemp("/tmp", "clxbench")
	cfg := filepath.Join(dir, "config.xml")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	os.WriteFile(cfg, []byte(fmt.Sprintf(`<cloonix_config>
  <network_name>%s</network_name>
  <server_name>%s/ctl.sock</server_name>
  <server_port>%d</server_port>
  <password>bench-%s</password>
  <work_dir>%s</work_dir>
  <bulk_dir>%s</bulk_dir>
  <no_nat>true</no_nat>
</cloonix_config>
`, hostsh.Tag, dir, port, hostsh.Tag, dir, *bulk)), 0o600)
	c := bin + " -c " + cfg
	hostsh.Undo("rm -rf "+dir, c+" stop")
	hostsh.Must(c + " start")
	return c, dir + "/ctl.sock"
}

var gbitRe = regexp.MustCompile(`([0-9.]+) ([GMK])bits/sec\s+receiver`)

// iperf runs a one-shot iperf3 server on p's server side and the client
// for secs seconds once the path answers; Gbit/s at the receiver.
func iperf(p *path, secs int) float64 {
	pidf := fmt.Sprintf("/tmp/%s-iperf.pid", hostsh.Tag)
	hostsh.Must(fmt.Sprintf("%siperf3 -s -1 -D -I %s", p.out, pidf))
	defer hostsh.Sh(fmt.Sprintf("kill $(cat %s) 2>/dev/null; rm -f %s", pidf, pidf))
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 50; i++ {
		if _, err := hostsh.Sh(fmt.Sprintf("%sbusybox ping -c 1 -W 1 %s", p.in, p.addr)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := hostsh.Sh(fmt.Sprintf("%siperf3 -c %s -t %d", p.in, p.addr, secs))
	m := gbitRe.FindStringSubmatch(out)
	if err != nil || m == nil {
		fmt.Fprintln(os.Stderr, out, err)
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "M":
		v /= 1000
	case "K":
		v /= 1e6
	}
	return v
}

// stats returns the median and range of xs.
func stats(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1]
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
