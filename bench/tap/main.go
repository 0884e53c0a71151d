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
// All four are set up first; then rounds run iperf3 over each in turn,
// so a busy moment of a shared machine does not fall on one path only.
// It prints a table (median and range per path) with the ratios. Run as
// root: `go run ./bench/tap` (flags: -t seconds, -rounds N, -short).
// Every name it creates carries its pid, and it removes them all when
// done.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"cloonix/bench/internal/hostsh"
	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
)

var (
	secs   = flag.Int("t", 10, "iperf3 seconds per case")
	rounds = flag.Int("rounds", 3, "rounds; the paths take turns, the table shows the median and the range")
	short  = flag.Bool("short", false, "smoke run: 1 s, one round")
	binArg = flag.String("bin", "", "cloonix binary (default: build one)")
	only   = flag.String("paths", "bridge,vde,tap,t2t", "which paths to run")
)

// path is one way between two namespaces, ready for iperf3.
type path struct {
	name     string
	nsA, nsB string
	addr     string
	v        stats.Series // Gbit/s per round
}

func bridge() *path {
	a, b := hostsh.BridgedPair("10.77.0")
	return &path{name: "Linux bridge (veth)", nsA: a, nsB: b, addr: "10.77.0.2"}
}

func vde() *path {
	a, b := hostsh.Netns("vdA"), hostsh.Netns("vdB")
	ta, tb := hostsh.Tag+"va", hostsh.Tag+"vb"
	dir, _ := os.MkdirTemp("", "vde")
	hostsh.Undo("rm -rf " + dir)
	cmd := exec.Command("vde_switch", "-s", filepath.Join(dir, "ctl"), "-t", ta, "-t", tb)
	// vde_switch leaves when its console (stdin) ends: keep it open
	// (the pipe stays open until this program exits).
	if _, err := cmd.StdinPipe(); err != nil {
		fmt.Fprintln(os.Stderr, "vde_switch:", err)
		return nil
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "vde_switch:", err)
		return nil
	}
	hostsh.Undo(fmt.Sprintf("kill %d", cmd.Process.Pid))
	for i := 0; i < 50; i++ {
		if _, err := hostsh.Sh("ip link show " + tb + " && ip link show " + ta); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	hostsh.Place(ta, a, "10.78.0.1")
	hostsh.Place(tb, b, "10.78.0.2")
	return &path{name: "vde_switch (taps)", nsA: a, nsB: b, addr: "10.78.0.2"}
}

// startSwitch starts a switch with its own config; prefix runs it (e.g.
// in a namespace).
func startSwitch(bin, name, prefix string) string {
	c, _ := benchlab.StartSh(bin, prefix, benchlab.Config{Name: name})
	return c
}

func cloonix(bin string) *path {
	a, b := hostsh.Netns("cxA"), hostsh.Netns("cxB")
	c := startSwitch(bin, hostsh.Tag+"cx", "")
	for _, x := range []struct{ ns, ip, s string }{{a, "10.79.0.1", "a"}, {b, "10.79.0.2", "b"}} {
		ifn := hostsh.Tag + "c" + x.s
		hostsh.Must(fmt.Sprintf("%s ctrl add tux tap t%s --ifname %s && %s ctrl attach t%s lan", c, x.s, ifn, c, x.s))
		hostsh.Place(ifn, x.ns, x.ip)
	}
	return &path{name: "cloonix (tap tux)", nsA: a, nsB: b, addr: "10.79.0.2"}
}

func t2t(bin string) *path {
	a, b, sw := hostsh.Netns("ttA"), hostsh.Netns("ttB"), hostsh.Netns("ttS")
	h, n := hostsh.Tag+"th", hostsh.Tag+"tn"
	hostsh.Must(fmt.Sprintf("ip link add %s type veth peer name %s && ip addr add 10.81.0.1/24 dev %s && ip link set %s up", h, n, h, h))
	hostsh.Undo("ip link del " + h)
	hostsh.Place(n, sw, "10.81.0.2")
	c1 := startSwitch(bin, hostsh.Tag+"t1", "")
	c2 := startSwitch(bin, hostsh.Tag+"t2", "ip netns exec "+sw+" ")
	hostsh.Must(c2 + " ctrl add tux t2t link --listen 10.81.0.2:7301 --password p && " + c2 + " ctrl attach link lan")
	hostsh.Must(c1 + " ctrl add tux t2t link --peer 10.81.0.2:7301 --password p && " + c1 + " ctrl attach link lan")
	hostsh.Must(fmt.Sprintf("%s ctrl add tux tap ta --ifname %sa && %s ctrl attach ta lan", c1, hostsh.Tag, c1))
	hostsh.Place(hostsh.Tag+"a", a, "10.80.0.1")
	hostsh.Must(fmt.Sprintf("%s ctrl add tux tap tb --ifname %sb && %s ctrl attach tb lan", c2, hostsh.Tag, c2))
	hostsh.PlaceFrom(hostsh.In(sw), hostsh.Tag+"b", b, "10.80.0.2")
	return &path{name: "cloonix t2t (2 switches)", nsA: a, nsB: b, addr: "10.80.0.2"}
}

func main() {
	flag.Parse()
	if *short {
		*secs, *rounds = 1, 1
	}
	bin, done := benchlab.Binary(*binArg)
	defer done()
	fmt.Printf("bench/tap: iperf3 TCP, one stream, %d s per case, %d rounds taking turns, TCP congestion control %s\nhost: %s\n", *secs, *rounds, hostsh.CC(), stats.Host())
	var paths []*path
	for _, c := range []struct {
		name string
		mk   func() *path
	}{{"bridge", bridge}, {"vde", vde}, {"tap", func() *path { return cloonix(bin) }}, {"t2t", func() *path { return t2t(bin) }}} {
		if !slices.Contains(strings.Split(*only, ","), c.name) {
			continue
		}
		if p := c.mk(); p != nil {
			paths = append(paths, p)
		}
	}
	defer hostsh.Cleanup()
	// Rounds take turns over the paths, so a busy moment of the machine
	// does not fall on one path only.
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			v := hostsh.Iperf(p.nsA, p.nsB, p.addr, *secs)
			p.v.Add(v)
			fmt.Printf("  round %d %-26s %6.2f Gbit/s\n", r+1, p.name, v)
		}
	}
	get := func(name string) *path {
		for _, p := range paths {
			if strings.HasPrefix(p.name, name) {
				return p
			}
		}
		return &path{}
	}
	br, vd := get("Linux bridge").v.Median(), get("vde_switch").v.Median()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "path\tGbit/s (median)\tmin-max\tvs vde_switch\tvs Linux bridge\t")
	for _, p := range paths {
		m := p.v.Median()
		fmt.Fprintf(w, "%s\t%.2f\t%s\t%s\t%s\t\n", p.name, m, p.v.Range(2), stats.Ratio(m, vd), stats.Ratio(m, br))
	}
	w.Flush()
	fmt.Println("load average after:", stats.Load())
	fmt.Println("targets (issue 18, medians): cloonix (tap tux) >= 0.6x Linux bridge and >= 3x vde_switch")
}
