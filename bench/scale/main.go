// Command scale loads N UML busybox guests (64 MB, one eth each, all on
// one lan) from a demo folder with `cloonix fconf load`, as a user would,
// and prints N, the time until every agent answered (state running),
// the CPU-seconds each boot took (the guest's process group when it was
// first seen running), the host memory per guest (PSS) and the switch's;
// then every guest pings the next one across the lan. Each guest's
// address comes from its own rc.d script (the demo folder's
// files_to_add_in_all_targets), so the boot does the rc.d work a demo's
// does. `-rounds` repeats the whole load (a fresh switch each time) and
// the table shows medians and ranges.
//
// Run as root: `go run ./bench/scale [-n 100] [-rounds 1] [-short]`
// (images from CLOONIX_BULK or ~/cloonix_labs/bulk: `make images`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
)

var (
	count   = flag.Int("n", 100, "guests")
	mem     = flag.Int("mem", 64, "MB per guest")
	rounds  = flag.Int("rounds", 1, "loads, each on a fresh switch; the table shows medians and ranges")
	bulk    = flag.String("bulk", "", "bulk_dir (default $CLOONIX_BULK or ~/cloonix_labs/bulk)")
	timeout = flag.Duration("timeout", 300*time.Second, "how long the load may take")
	short   = flag.Bool("short", false, "smoke run: 3 guests, one round")
	binArg  = flag.String("bin", "", "cloonix binary (default: build one)")
)

// The rc.d script every guest runs at boot: its address from the digits
// of its name (g1 is 10.99.0.1, g300 is 10.99.1.44).
const rcAddr = `#!/bin/sh
n=$(hostname | tr -cd 0-9)
ip addr add 10.99.$((n / 256)).$((n % 256))/16 dev eth0
ip link set eth0 up
`

// demo writes the demo folder: a topology of n UML guests on lan "lan"
// and the rc.d script.
func demo(dir string, n int) error {
	var b strings.Builder
	b.WriteString("<TOPOLOGY>\n  <config_path> . </config_path>\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  <VM> <name> g%d </name> <type> UML </type> <mem> %d </mem> <rootfs> busybox </rootfs> <eth> <vlan> lan </vlan> </eth> </VM>\n", i, *mem)
	}
	b.WriteString("</TOPOLOGY>\n")
	if err := os.WriteFile(filepath.Join(dir, "topology"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	rc := filepath.Join(dir, "files_to_add_in_all_targets", "etc", "rc.d")
	if err := os.MkdirAll(rc, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(rc, "S05_bench_addr"), []byte(rcAddr), 0o755)
}

// result is one load.
type result struct {
	ready     int     // guests running at the end
	allSecs   float64 // load start to the last guest running
	medSecs   float64 // median guest: load start to running
	cpuPerVM  float64 // CPU-seconds per boot (mean)
	memPerVM  float64 // PSS MB per guest (mean)
	switchMB  float64 // switch RSS
	pingOK    int
	failed    []string
	loadAfter string
}

func main() {
	flag.Parse()
	if *short {
		*count, *rounds = 3, 1
	}
	*bulk = benchlab.Bulk(*bulk)
	top, err := os.MkdirTemp("/tmp", "cxscale")
	check(err)
	defer os.RemoveAll(top)
	bin, done := benchlab.Binary(*binArg)
	defer done()
	fmt.Printf("bench/scale: %d UML busybox guests (%d MB, one lan) from one demo folder, %d round(s)\nhost: %s\n", *count, *mem, *rounds, stats.Host())
	var res []result
	for r := 0; r < *rounds; r++ {
		dir := filepath.Join(top, fmt.Sprintf("r%d", r))
		check(os.MkdirAll(filepath.Join(dir, "demo"), 0o755))
		check(demo(filepath.Join(dir, "demo"), *count))
		x := load(bin, dir)
		fmt.Printf("  round %d: %d/%d ready, all in %.1f s (median guest %.1f s), %.2f CPU-s per boot, %.1f MB per guest, pings %d/%d, load after %s\n",
			r+1, x.ready, *count, x.allSecs, x.medSecs, x.cpuPerVM, x.memPerVM, x.pingOK, *count, x.loadAfter)
		if len(x.failed) > 0 {
			fmt.Printf("  round %d: not ready: %s\n", r+1, strings.Join(x.failed, ", "))
		}
		res = append(res, x)
	}
	series := func(f func(result) float64) stats.Series {
		var s stats.Series
		for _, x := range res {
			s.Add(f(x))
		}
		return s
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\tready (worst round)\ttime to all ready (s)\tmin-max\tmedian guest (s)\tCPU-s per boot\tmin-max\thost MB per guest\tswitch MB\tpings ok (worst)\t")
	worst := func(f func(result) int) int {
		m := *count
		for _, x := range res {
			m = min(m, f(x))
		}
		return m
	}
	all, med, cpu := series(func(x result) float64 { return x.allSecs }), series(func(x result) float64 { return x.medSecs }), series(func(x result) float64 { return x.cpuPerVM })
	memS, sw := series(func(x result) float64 { return x.memPerVM }), series(func(x result) float64 { return x.switchMB })
	fmt.Fprintf(w, "%d\t%d\t%.1f\t%s\t%.1f\t%.2f\t%s\t%.1f\t%.1f\t%d\t\n", *count, worst(func(x result) int { return x.ready }),
		all.Median(), all.Range(1), med.Median(), cpu.Median(), cpu.Range(2), memS.Median(), sw.Median(), worst(func(x result) int { return x.pingOK }))
	w.Flush()
}

// load starts a switch in dir, loads the demo and measures.
func load(bin, dir string) result {
	sw, err := benchlab.Start(bin, dir, *bulk, fmt.Sprintf("bench-scale-%d", os.Getpid()))
	check(err)
	defer sw.Stop()
	c, err := sw.Client()
	check(err)
	defer c.Close()

	// Poll the lab while the load runs: when each guest is first seen
	// running, and the CPU its boot took.
	var (
		mu      sync.Mutex
		readyAt = map[string]float64{}
		cpuAt   = map[string]float64{}
		pids    = map[string]int{}
	)
	t0 := time.Now()
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			if lab, err := c.List(); err == nil {
				mu.Lock()
				for _, v := range lab.VMs {
					pids[v.Name] = v.Pid
					if _, seen := readyAt[v.Name]; !seen && v.State == "running" {
						readyAt[v.Name] = time.Since(t0).Seconds()
						cpuAt[v.Name] = benchlab.GuestCPU(v.Pid)
					}
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	out, lerr := sw.Run("fconf", "load", filepath.Join(dir, "demo"), "--timeout", timeout.String())
	// One more look after the load returned, then stop polling.
	time.Sleep(150 * time.Millisecond)
	close(stop)
	<-polled
	if lerr != nil {
		fmt.Fprintf(os.Stderr, "fconf load: %s\n", lastLines(out, 5))
	}
	var r result
	var times []float64
	var cpu, memMB float64
	for i := 1; i <= *count; i++ {
		g := fmt.Sprintf("g%d", i)
		t, ok := readyAt[g]
		if !ok {
			r.failed = append(r.failed, g+" ("+why(filepath.Join(dir, g, "console.log"))+")")
			continue
		}
		r.ready++
		times = append(times, t)
		cpu += cpuAt[g]
		memMB += benchlab.GuestMemMB(pids[g])
	}
	if r.ready > 0 {
		sort.Float64s(times)
		r.allSecs, r.medSecs = times[len(times)-1], times[len(times)/2]
		r.cpuPerVM, r.memPerVM = cpu/float64(r.ready), memMB/float64(r.ready)
	}
	r.switchMB = benchlab.RSSMB(sw.Pid())
	r.pingOK = pings(sw, readyAt)
	r.loadAfter = stats.Load()
	return r
}

// pings has every ready guest ping the next one (g1 -> g2 ... gN -> g1),
// a few at a time, and counts the answers.
func pings(sw *benchlab.Switch, ready map[string]float64) int {
	var (
		mu sync.Mutex
		ok int
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for i := 1; i <= *count; i++ {
		g := fmt.Sprintf("g%d", i)
		if _, up := ready[g]; !up {
			continue
		}
		next := i%*count + 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			addr := fmt.Sprintf("10.99.%d.%d", next/256, next%256)
			if _, err := sw.Exec(g, "ping -c 1 -W 5 "+addr+" || ping -c 1 -W 5 "+addr); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok
}

// why is the likeliest reason in a guest's console log that it never
// answered: the OOM killer, a panic, else its last line.
func why(console string) string {
	b, err := os.ReadFile(console)
	if err != nil {
		return "no console log"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Out of memory") || strings.Contains(l, "Kernel panic") || strings.Contains(l, "invoked oom-killer") {
			return strings.TrimSpace(l)
		}
	}
	return "console: " + lastLines(string(b), 1)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
		os.Exit(1)
	}
}
