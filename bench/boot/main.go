// Command boot measures guest start-up: seconds from `ctrl add vm` to the
// agent's first answer (state running) for UML and QEMU (KVM when it
// works, TCG otherwise) with the busybox and debian-frr images, and for
// ten UML busybox guests added at once; then the memory each guest and
// the switch use. It starts its own switch (a fresh cloonix binary, a
// private work_dir) and prints a table. Run: `go run ./bench/boot`
// (images from CLOONIX_BULK or ~/cloonix_labs/bulk; `make images`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
	"cloonix/internal/proto"
)

var (
	bulk   = flag.String("bulk", "", "bulk_dir (default $CLOONIX_BULK or ~/cloonix_labs/bulk)")
	many   = flag.Int("n", 10, "guests in the all-at-once case")
	rounds = flag.Int("rounds", 2, "rounds per single-guest case; the best is kept (the machine may be shared)")
	skipQ  = flag.Bool("no-qemu", false, "skip the QEMU cases")
	short  = flag.Bool("short", false, "smoke run: one round, UML busybox only, 2 guests at once")
)

type row struct {
	what    string
	secs    float64
	memMB   float64 // proportional set size per guest
	note    string
	targetS float64
}

func main() {
	flag.Parse()
	if *short {
		*rounds, *many, *skipQ = 1, 2, true
	}
	*bulk = benchlab.Bulk(*bulk)
	dir, err := os.MkdirTemp("/tmp", "cxboot")
	check(err)
	defer os.RemoveAll(dir)
	bin, err := benchlab.Build(dir)
	check(err)
	sw, err := benchlab.Start(bin, dir, *bulk, "bench-boot")
	check(err)
	defer sw.Stop()
	sock := sw.Sock
	c, err := proto.Dial("unix:"+sock, "")
	check(err)
	defer c.Close()

	var rows []row
	n := 0
	name := func() string { n++; return fmt.Sprintf("g%d", n) }
	single := func(typ, image string, target float64) {
		what := fmt.Sprintf("%s %s", typ, image)
		if _, err := os.Stat(filepath.Join(*bulk, image+".img")); err != nil {
			rows = append(rows, row{what: what, note: "image missing (cloonix bulk build " + image + ")"})
			return
		}
		best := row{what: what, secs: -1, targetS: target}
		for r := 0; r < *rounds; r++ {
			g := name()
			secs, accel, err := addVM(c, g, typ, image)
			if err != nil {
				best.note = err.Error()
				break
			}
			mem := guestMem(c, g)
			if best.secs < 0 || secs < best.secs {
				best.secs, best.memMB = secs, mem
			}
			if accel != "" {
				best.what = fmt.Sprintf("%s (%s) %s", typ, accel, image)
			}
			_, _ = c.Call("del_vm", map[string]string{"name": g})
		}
		rows = append(rows, best)
	}
	single("uml", "busybox", 2)
	if !*skipQ {
		single("kvm", "busybox", 6)
	}
	if !*short {
		single("uml", "debian-frr", 0)
	}
	if !*skipQ {
		single("kvm", "debian-frr", 0)
	}

	// N UML busybox guests at once.
	if _, err := os.Stat(filepath.Join(*bulk, "busybox.img")); err == nil {
		names := make([]string, *many)
		for i := range names {
			names[i] = name()
		}
		rows = append(rows, atOnce(c, sock, names))
	}
	swMB := benchlab.RSSMB(sw.Pid())

	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "case\tadd vm -> agent ready (s)\ttarget (s)\tmemory per guest (MB PSS)\tnote")
	for _, r := range rows {
		secs, tgt, mem := "-", "-", "-"
		if r.secs > 0 {
			secs = fmt.Sprintf("%.2f", r.secs)
		}
		if r.targetS > 0 {
			tgt = fmt.Sprintf("< %.0f", r.targetS)
		}
		if r.memMB > 0 {
			mem = fmt.Sprintf("%.1f", r.memMB)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.what, secs, tgt, mem, r.note)
	}
	fmt.Fprintf(w, "switch (with %d guests)\t\t\t%.1f (RSS)\t\n", *many, swMB)
	w.Flush()
	fmt.Println("host:", stats.Host())
}

// atOnce adds the UML busybox guests names all at once and waits for
// them: the seconds until the last answered, memory per guest.
func atOnce(c *proto.Client, sock string, names []string) row {
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	t0 := time.Now()
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection each: the switch answers a connection's
			// requests in order, so one would serialise the waits.
			ci, err := proto.Dial("unix:"+sock, "")
			if err != nil {
				errs[i] = err
				return
			}
			defer ci.Close()
			_, _, errs[i] = addVM(ci, names[i], "uml", "busybox")
		}()
	}
	wg.Wait()
	r := row{what: fmt.Sprintf("%d x uml busybox at once", len(names)), secs: time.Since(t0).Seconds(), targetS: 8}
	for _, e := range errs {
		if e != nil {
			r.note = e.Error()
		}
	}
	var tot float64
	for _, g := range names {
		tot += guestMem(c, g)
	}
	r.memMB = tot / float64(len(names))
	return r
}

// addVM adds a guest and waits for its agent; it returns the seconds
// taken and the acceleration used.
func addVM(c *proto.Client, name, typ, image string) (float64, string, error) {
	t0 := time.Now()
	out, err := c.Call("add_vm", map[string]string{"name": name, "type": typ, "rootfs": image, "eth": "1", "wait": "true"})
	secs := time.Since(t0).Seconds()
	if err != nil {
		return 0, "", fmt.Errorf("%s: %v", name, err)
	}
	accel := ""
	if i := strings.Index(string(out), `accel="`); i >= 0 {
		accel = strings.SplitN(string(out)[i+7:], `"`, 2)[0]
	}
	return secs, accel, nil
}

// guestMem is the PSS (MB) of guest name's process group.
func guestMem(c *proto.Client, name string) float64 {
	lab, err := c.List()
	if err != nil {
		return 0
	}
	for _, v := range lab.VMs {
		if v.Name == name && v.Pid > 0 {
			return benchlab.GuestMemMB(v.Pid)
		}
	}
	return 0
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench/boot: "+f+"\n", a...)
	os.Exit(1)
}
