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
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	secs    float64 // the median of the rounds
	lo, hi  float64 // their range
	memMB   float64 // proportional set size per guest
	cgMB    float64 // cnt: the memory cgroup's charge per guest (processes + kernel)
	swMB    float64 // the switch's RSS with these guests
	note    string
	targetS float64
}

func main() {
	flag.Parse()
	if *short {
		*rounds, *many, *manyCnt, *only = 1, 2, 2, "uml,cnt"
	}
	if *bulk == "" {
		*bulk = os.Getenv("CLOONIX_BULK")
	}
	if *bulk == "" {
		home, _ := os.UserHomeDir()
		*bulk = filepath.Join(home, "cloonix_labs", "bulk")
	}
	dir, err := os.MkdirTemp("/tmp", "cxboot")
	check(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "cloonix")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cloonix")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fail("building cloonix: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "config.xml")
	sock := filepath.Join(dir, "ctl.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	check(os.WriteFile(cfg, []byte(fmt.Sprintf(`<cloonix_config><network_name>bench-boot</network_name>
<server_name>%s</server_name><server_port>%d</server_port><password>bench</password>
<work_dir>%s</work_dir><bulk_dir>%s</bulk_dir><no_nat>true</no_nat><mgmt>off</mgmt></cloonix_config>`, sock, port, dir, *bulk)), 0o600))
	run(bin, "-c", cfg, "start")
	defer run(bin, "-c", cfg, "stop")
	c, err := proto.Dial("unix:"+sock, "")
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
		rows = append(rows, atOnce(sock, c, "uml", *many, 8, name))
	}
	if want("cnt") {
		rows = append(rows, atOnce(sock, c, "cnt", *manyCnt, 15, name))
	}
	pid := switchPid(dir)
	sw := rss(pid)

	printRows(rows, sw)
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

// guestMem is the proportional set size (MB) of a guest's process group:
// UML runs one host process per guest address space sharing its memory
// file, so PSS rather than RSS.
func guestMem(c *proto.Client, name string) float64 {
	lab, err := c.List()
	if err != nil {
		return 0
	}
	pid := 0
	for _, v := range lab.VMs {
		if v.Name == name {
			pid = v.Pid
		}
	}
	if pid == 0 {
		return 0
	}
	ents, _ := os.ReadDir("/proc")
	var kb float64
	var seen []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(p); err != nil || g != pid {
			continue
		}
		// UML's helper processes share the main one's address space
		// (clone with CLONE_VM): count each address space once.
		dup := false
		for _, q := range seen {
			dup = dup || sameVM(p, q)
		}
		if dup {
			continue
		}
		seen = append(seen, p)
		kb += procField(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
	}
	return kb / 1024
}

// sameVM tells whether two processes share one address space (kcmp).
func sameVM(a, b int) bool {
	const sysKcmp, kcmpVM = 312, 1
	r, _, e := syscall.Syscall6(sysKcmp, uintptr(a), uintptr(b), kcmpVM, 0, 0, 0)
	return e == 0 && r == 0
}

func rss(pid int) float64 { return procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") / 1024 }

func procField(path, key string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), key) {
			v, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return v
		}
	}
	return 0
}

func switchPid(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "switch.pid"))
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func run(args ...string) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fail("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
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
