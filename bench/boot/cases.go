package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
	"cloonix/internal/proto"
)

type bootCase struct {
	typ, image string
	target     float64 // seconds, 0 for none
}

// singles runs the single-guest cases, the cases taking turns in each
// round so that a burst of load from elsewhere hits them alike.
func singles(c *proto.Client, cases []bootCase, name func() string) []row {
	rows := make([]row, len(cases))
	for i, k := range cases {
		rows[i] = row{what: k.typ + " " + k.image, targetS: k.target}
		if _, err := os.Stat(filepath.Join(*bulk, k.image+".img")); err != nil {
			rows[i].note = "image missing (cloonix bulk build " + k.image + ")"
			continue
		}
		if k.typ == "cnt" {
			// The first use unpacks the image into bulk_dir/.cnt (once
			// per image version): not a boot, so not timed.
			g := name()
			if _, _, err := addVM(c, g, k.typ, k.image); err != nil {
				rows[i].note = err.Error()
			}
			_, _ = c.Call("del_vm", map[string]string{"name": g})
		}
	}
	for r := 0; r < *rounds; r++ {
		for i, k := range cases {
			if rows[i].note != "" {
				continue
			}
			g := name()
			s, accel, err := addVM(c, g, k.typ, k.image)
			if err != nil {
				rows[i].note = err.Error()
				continue
			}
			rows[i].secs.Add(s)
			if k.typ == "cnt" {
				m, cg := cntMem(c, []string{g})
				rows[i].memMB, rows[i].cgMB = m, cg
			} else {
				rows[i].memMB = guestMem(c, g)
			}
			if accel != "" {
				rows[i].what = fmt.Sprintf("%s (%s) %s", k.typ, accel, k.image)
			}
			_, _ = c.Call("del_vm", map[string]string{"name": g})
		}
	}
	return rows
}

// atOnce adds n busybox guests of type typ at the same time, each on its
// own connection (the switch answers a connection's requests in order),
// and measures until the last is ready; then the memory per guest, and
// deletes them.
func atOnce(sw *benchlab.Switch, c *proto.Client, typ string, n int, target float64, name func() string) row {
	r := row{what: fmt.Sprintf("%d x %s busybox at once", n, typ), targetS: target}
	if _, err := os.Stat(filepath.Join(*bulk, "busybox.img")); err != nil {
		r.note = "image missing (cloonix bulk build busybox)"
		return r
	}
	var wg sync.WaitGroup
	names := make([]string, n)
	errs := make([]error, n)
	t0 := time.Now()
	for i := range names {
		names[i] = name()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ci, err := sw.Client()
			if err != nil {
				errs[i] = err
				return
			}
			defer ci.Close()
			_, _, errs[i] = addVM(ci, names[i], typ, "busybox")
		}()
	}
	wg.Wait()
	r.secs.Add(time.Since(t0).Seconds())
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
			r.note = fmt.Sprintf("%d failed: %v", failed, e)
		}
	}
	if typ == "cnt" {
		r.memMB, r.cgMB = cntMem(c, names)
	} else {
		var tot float64
		for _, g := range names {
			tot += guestMem(c, g)
		}
		r.memMB = tot / float64(n)
	}
	r.swMB = benchlab.RSSMB(sw.Pid())
	for _, g := range names {
		_, _ = c.Call("del_vm", map[string]string{"name": g})
	}
	return r
}

// cntMem is the memory per container node of names: the PSS (MB) of the
// processes in each node's pid namespace, and the charge of each node's
// memory cgroup (its processes plus the kernel memory they use: page
// tables, sockets, the overlay's inodes...), averaged.
func cntMem(c *proto.Client, names []string) (pss, cg float64) {
	lab, err := c.List()
	if err != nil {
		return 0, 0
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	nsOf := func(pid int) string { l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); return l }
	ns := map[string]bool{}
	count := 0
	for _, v := range lab.VMs {
		if !want[v.Name] || v.Pid <= 0 {
			continue
		}
		count++
		ns[nsOf(v.Pid)] = true
		cg += cgroupBytes(v.Pid) / (1 << 20)
	}
	if count == 0 {
		return 0, 0
	}
	ents, _ := os.ReadDir("/proc")
	var kb float64
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err == nil && ns[nsOf(p)] {
			kb += benchlab.PSSKB(p)
		}
	}
	return kb / 1024 / float64(count), cg / float64(count)
}

// cgroupBytes is the memory charge of pid's memory cgroup (v1 or v2).
func cgroupBytes(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		file := ""
		switch {
		case strings.Contains(","+f[1]+",", ",memory,"):
			file = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.usage_in_bytes")
		case f[0] == "0" && f[1] == "":
			file = filepath.Join("/sys/fs/cgroup", f[2], "memory.current")
		default:
			continue
		}
		if v, err := os.ReadFile(file); err == nil {
			n, _ := strconv.ParseFloat(strings.TrimSpace(string(v)), 64)
			return n
		}
	}
	return 0
}

func printRows(rows []row, sw float64) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "case\tadd vm -> ready (s), median of %d\trange (s)\ttarget (s)\tmemory per guest (MB PSS)\tcgroup per guest (MB)\tswitch RSS (MB)\tnote\n", *rounds)
	f := func(v float64, format string) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.what, f(r.secs.Median(), "%.2f"), r.secs.Range(2), f(r.targetS, "< %g"), f(r.memMB, "%.1f"), f(r.cgMB, "%.1f"), f(r.swMB, "%.0f"), r.note)
	}
	fmt.Fprintf(w, "switch at the end\t\t\t\t\t\t%.0f\t\n", sw)
	w.Flush()
	fmt.Printf("host: %d CPUs, load average %s\n", runtime.NumCPU(), stats.Load())
}
