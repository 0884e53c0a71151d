// Command boot measures guest start-up: seconds from `ctrl add vm` to the
// guest's ready (state running: the agent's first answer, or a container
// node's init done) for UML, QEMU (KVM when it works, TCG otherwise) and
// container nodes with the busybox and debian-frr images, and for ten UML
// and a hundred cnt busybox guests added at once; then the memory each
// guest and the switch use. `-types cnt` measures container nodes only. It starts its own switch (a fresh cloonix binary, a
// private work_dir) and prints a table. Run: `go run ./bench/boot`
// (images from CLOONIX_BULK or ~/cloonix_labs/bulk; `make images`).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	benchlab "cloonix/bench/internal/lab"
	"cloonix/bench/internal/stats"
	"cloonix/internal/proto"
)

var (
	bulk    = flag.String("bulk", "", "bulk_dir (default $CLOONIX_BULK or ~/cloonix_labs/bulk)")
	many    = flag.Int("n", 10, "UML guests in the all-at-once case")
	manyCnt = flag.Int("ncnt", 100, "cnt guests in the all-at-once case")
	rounds  = flag.Int("rounds", 3, "rounds per single-guest case, the cases taking turns; median and range are shown (the machine may be shared)")
	skipQ   = flag.Bool("no-qemu", false, "skip the QEMU cases")
	only    = flag.String("types", "uml,kvm,cnt", "node types to measure")
	short   = flag.Bool("short", false, "smoke run (make test): one round, UML and cnt busybox, 2 guests at once")
)

// want tells whether node type typ is measured.
func want(typ string) bool {
	if typ == "kvm" && *skipQ {
		return false
	}
	for _, t := range strings.Split(*only, ",") {
		if t == typ {
			return true
		}
	}
	return false
}

type row struct {
	what    string
	secs    stats.Series // add vm -> ready, per round
	memMB   float64      // proportional set size per guest
	cgMB    float64      // cnt: the memory cgroup's charge per guest (processes + kernel)
	swMB    float64      // the switch's RSS with these guests
	note    string
	targetS float64
}

func main() {
	flag.Parse()
	if *short {
		*rounds, *many, *manyCnt, *only = 1, 2, 2, "uml,cnt"
	}
	*bulk = benchlab.Bulk(*bulk)
	dir, err := os.MkdirTemp("/tmp", "cxboot")
	check(err)
	defer os.RemoveAll(dir)
	bin, done := benchlab.Binary("")
	defer done()
	sw, err := benchlab.Start(bin, dir, *bulk, "bench-boot")
	check(err)
	defer sw.Stop()
	c, err := sw.Client()
	check(err)
	defer c.Close()

	var rows []row
	n := 0
	name := func() string { n++; return fmt.Sprintf("g%d", n) }
	var cases []bootCase
	for _, c := range []bootCase{{"uml", "busybox", 2}, {"kvm", "busybox", 6}, {"cnt", "busybox", 0.3}, {"uml", "debian-frr", 0}, {"kvm", "debian-frr", 0}, {"cnt", "debian-frr", 0}} {
		if want(c.typ) {
			cases = append(cases, c)
		}
	}
	rows = append(rows, singles(c, cases, name)...)
	if want("uml") {
		rows = append(rows, atOnce(sw, c, "uml", *many, 8, name))
	}
	if want("cnt") {
		rows = append(rows, atOnce(sw, c, "cnt", *manyCnt, 15, name))
	}
	printRows(rows, benchlab.RSSMB(sw.Pid()))
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

// guestMem is the proportional set size (MB) of guest name's process
// group (see benchlab.GuestMemMB).
func guestMem(c *proto.Client, name string) float64 {
	lab, err := c.List()
	if err != nil {
		return 0
	}
	for _, v := range lab.VMs {
		if v.Name == name && v.Pid != 0 {
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
