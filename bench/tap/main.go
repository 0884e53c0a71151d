// Command tap measures TCP throughput (iperf3) between two network
// namespaces joined on one lan, in the same run:
//
//   - through cloonix: each namespace holds a tap tux of one switch, both
//     taps on one lan;
//   - through vde_switch (`vde_switch -t tapA -t tapB`, package vde2);
//   - through a Linux bridge with veth pairs (the kernel's own path);
//   - through t2t: two switches (the second inside its own namespace,
//     reached over a veth pair), a tap on each, joined by a t2t tux.
//
// It prints a table with the ratios. Run as root: `go run ./bench/tap`
// (flags: -t seconds). Every name it creates carries its pid, and it
// removes them all when done.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var (
	secs   = flag.Int("t", 10, "iperf3 seconds per case")
	binArg = flag.String("bin", "", "cloonix binary (default: build one)")
	tag    = fmt.Sprintf("b%d", os.Getpid()%100000)
	undo   []string // shell commands run at the end, last first
)

func sh(cmd string) (string, error) {
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return string(out), nil
}

func must(cmd string) string {
	out, err := sh(cmd)
	if err != nil {
		cleanup()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return out
}

func cleanup() {
	for i := len(undo) - 1; i >= 0; i-- {
		_, _ = sh(undo[i])
	}
	undo = nil
}

func netns(name string) string {
	ns := tag + name
	must("ip netns add " + ns)
	undo = append(undo, "ip netns del "+ns)
	must("ip netns exec " + ns + " ip link set lo up")
	return ns
}

// place moves an interface into ns with an address and brings it up.
func place(ifname, ns, addr string) {
	must(fmt.Sprintf("ip link set %s netns %s && ip netns exec %s ip addr add %s/24 dev %s && ip netns exec %s ip link set %s up", ifname, ns, ns, addr, ifname, ns, ifname))
}

var gbitRe = regexp.MustCompile(`([0-9.]+) ([GMK])bits/sec\s+receiver`)

// iperf runs iperf3 from nsA to the server in nsB at addr; Gbit/s.
func iperf(nsA, nsB, addr string) float64 {
	must(fmt.Sprintf("ip netns exec %s iperf3 -s -1 -D -I /tmp/%s-iperf.pid", nsB, tag))
	time.Sleep(300 * time.Millisecond)
	// Wait until the path works (ARP, links up).
	for i := 0; i < 50; i++ {
		if _, err := sh(fmt.Sprintf("ip netns exec %s busybox ping -c 1 -W 1 %s", nsA, addr)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := must(fmt.Sprintf("ip netns exec %s iperf3 -c %s -t %d", nsA, addr, *secs))
	m := gbitRe.FindStringSubmatch(out)
	if m == nil {
		fmt.Fprintln(os.Stderr, out)
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

func bridge() float64 {
	a, b := netns("brA"), netns("brB")
	br := tag + "br"
	must("ip link add " + br + " type bridge && ip link set " + br + " up")
	undo = append(undo, "ip link del "+br)
	for _, x := range []struct{ ns, ip, s string }{{a, "10.77.0.1", "a"}, {b, "10.77.0.2", "b"}} {
		h, n := tag+"h"+x.s, tag+"n"+x.s
		must(fmt.Sprintf("ip link add %s type veth peer name %s && ip link set %s master %s up", h, n, h, br))
		place(n, x.ns, x.ip)
	}
	defer cleanup()
	return iperf(a, b, "10.77.0.2")
}

func vde() float64 {
	a, b := netns("vdA"), netns("vdB")
	ta, tb := tag+"va", tag+"vb"
	dir, _ := os.MkdirTemp("", "vde")
	undo = append(undo, "rm -rf "+dir)
	cmd := exec.Command("vde_switch", "-s", filepath.Join(dir, "ctl"), "-t", ta, "-t", tb)
	// vde_switch leaves when its console (stdin) ends: keep it open.
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "vde_switch:", err)
		return 0
	}
	undo = append(undo, fmt.Sprintf("kill %d", cmd.Process.Pid))
	defer cleanup()
	for i := 0; i < 50; i++ {
		if _, err := sh("ip link show " + tb + " && ip link show " + ta); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	place(ta, a, "10.78.0.1")
	place(tb, b, "10.78.0.2")
	return iperf(a, b, "10.78.0.2")
}

// startSwitch starts a switch with its own config; prefix runs it (e.g.
// in a namespace).
func startSwitch(bin, name, prefix string) string {
	dir, _ := os.MkdirTemp("/tmp", "clxbench")
	cfg := filepath.Join(dir, "config.xml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`<cloonix_config>
  <network_name>%s</network_name>
  <server_name>%s/ctl.sock</server_name>
  <server_port>0</server_port>
  <password>bench-%s</password>
  <work_dir>%s</work_dir>
  <no_nat>true</no_nat>
</cloonix_config>
`, name, dir, tag, dir)), 0o600)
	c := bin + " -c " + cfg
	undo = append(undo, "rm -rf "+dir, c+" stop")
	must(prefix + c + " start")
	return c
}

func cloonix(bin string) float64 {
	a, b := netns("cxA"), netns("cxB")
	defer cleanup()
	c := startSwitch(bin, tag+"cx", "")
	for _, x := range []struct{ ns, ip, s string }{{a, "10.79.0.1", "a"}, {b, "10.79.0.2", "b"}} {
		ifn := tag + "c" + x.s
		must(fmt.Sprintf("%s ctrl add tux tap t%s --ifname %s && %s ctrl attach t%s lan", c, x.s, ifn, c, x.s))
		place(ifn, x.ns, x.ip)
	}
	return iperf(a, b, "10.79.0.2")
}

func t2t(bin string) float64 {
	a, b, sw := netns("ttA"), netns("ttB"), netns("ttS")
	defer cleanup()
	h, n := tag+"th", tag+"tn"
	must(fmt.Sprintf("ip link add %s type veth peer name %s && ip addr add 10.81.0.1/24 dev %s && ip link set %s up", h, n, h, h))
	undo = append(undo, "ip link del "+h)
	place(n, sw, "10.81.0.2")
	c1 := startSwitch(bin, tag+"t1", "")
	c2 := startSwitch(bin, tag+"t2", "ip netns exec "+sw+" ")
	must(c2 + " ctrl add tux t2t link --listen 10.81.0.2:7301 --password p && " + c2 + " ctrl attach link lan")
	must(c1 + " ctrl add tux t2t link --peer 10.81.0.2:7301 --password p && " + c1 + " ctrl attach link lan")
	must(fmt.Sprintf("%s ctrl add tux tap ta --ifname %sa && %s ctrl attach ta lan", c1, tag, c1))
	place(tag+"a", a, "10.80.0.1")
	must(fmt.Sprintf("%s ctrl add tux tap tb --ifname %sb && %s ctrl attach tb lan", c2, tag, c2))
	must(fmt.Sprintf("ip netns exec %s ip link set %sb netns %s && ip netns exec %s ip addr add 10.80.0.2/24 dev %sb && ip netns exec %s ip link set %sb up", sw, tag, b, b, tag, b, tag))
	return iperf(a, b, "10.80.0.2")
}

func main() {
	flag.Parse()
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
	fmt.Printf("iperf3 TCP, %d s per case, %s\n", *secs, time.Now().UTC().Format(time.RFC3339))
	br := bridge()
	vd := vde()
	cx := cloonix(bin)
	tt := t2t(bin)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tGbit/s\tvs vde_switch\tvs Linux bridge\t")
	row := func(name string, v float64) {
		fmt.Fprintf(w, "%s\t%.2f\t%.2fx\t%.2fx\t\n", name, v, ratio(v, vd), ratio(v, br))
	}
	row("Linux bridge (veth)", br)
	row("vde_switch (taps)", vd)
	row("cloonix (tap tux)", cx)
	row("cloonix t2t (2 switches)", tt)
	w.Flush()
	fmt.Println(strings.Repeat("-", 10))
	fmt.Printf("targets: cloonix >= 3x vde_switch (%v), >= 0.4x Linux bridge (%v)\n", ratio(cx, vd) >= 3, ratio(cx, br) >= 0.4)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
