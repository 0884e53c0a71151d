package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Container nodes (--type cnt, docs/containers.md): real runc, real
// overlay mounts and taps, beside UML guests on the same lans.

func needRunc(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("container nodes need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (apt-get install runc)")
	}
	needImages(t, "busybox.img")
}

// cntLeft lists what a deleted node left on the host: its init, mounts
// under its directory, runtime state, host taps of the lab.
func cntLeft(l *Lab, name string, pid int) []string {
	var left []string
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), filepath.Join(l.Dir, name)+"/") {
		left = append(left, "a mount under "+filepath.Join(l.Dir, name))
	}
	if _, err := os.Stat(filepath.Join(l.Dir, ".runc", name)); err == nil {
		left = append(left, "runc state")
	}
	if _, err := os.Stat(filepath.Join(l.Dir, name, "upper")); err == nil {
		left = append(left, "upper dir")
	}
	return left
}

func TestCntWithUML(t *testing.T) {
	needRunc(t)
	needImages(t, "linux.uml")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"ca", "cb"}, "--type", "cnt")
	l.addVMs([]string{"u1"}, "--type", "uml")
	lab := l.List()
	for _, n := range []string{"ca", "cb"} {
		v := vmOf(lab, n)
		if v == nil || v.Type != "cnt" || v.State != "running" || v.Pid <= 0 || len(v.Eths) != 1 || v.Eths[0].Port != n+":eth0" {
			t.Fatalf("list shows %s as %+v", n, v)
		}
	}
	out := l.MustRun("ctrl", "list", "--json")
	if !strings.Contains(strings.ReplaceAll(out, " ", ""), `"type":"cnt"`) {
		t.Fatalf("list --json: %s", out)
	}
	for i, n := range []string{"ca", "cb", "u1"} {
		l.MustRun("ctrl", "attach", n+":eth0", "lan1")
		l.vmMust(n, "ip", "addr", "add", fmt.Sprintf("10.78.0.%d/24", i+1), "dev", "eth0")
		l.vmMust(n, "ip", "link", "set", "eth0", "up")
	}
	for _, p := range [][2]string{{"ca", "10.78.0.2"}, {"ca", "10.78.0.3"}, {"u1", "10.78.0.1"}, {"cb", "10.78.0.3"}} {
		if !l.canPing(p[0], p[1]) {
			t.Fatalf("%s cannot ping %s", p[0], p[1])
		}
	}
	if got := strings.TrimSpace(l.vmMust("cb", "hostname")); got != "cb" {
		t.Fatalf("hostname %q", got)
	}
	if _, _, code := l.vmRun("ca", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
	if out, errs, code := l.vmRun("ca", "sh", "-c", "echo out; echo err >&2; exit 1"); code != 1 || out != "out\n" || errs != "err\n" {
		t.Fatalf("exec: %q %q %d", out, errs, code)
	}
	// Live detach and attach.
	l.MustRun("ctrl", "detach", "cb:eth0", "lan1")
	if l.canPing("ca", "10.78.0.2") {
		t.Fatal("ca pings cb after cb:eth0 left lan1")
	}
	l.MustRun("ctrl", "attach", "cb:eth0", "lan1")
	if !l.canPing("ca", "10.78.0.2") {
		t.Fatal("ca cannot ping cb after cb:eth0 joined lan1 again")
	}
	pid := vmOf(l.List(), "ca").Pid
	l.MustRun("ctrl", "del", "vm", "ca")
	if left := cntLeft(l, "ca", pid); len(left) > 0 {
		t.Fatalf("del vm ca left %v", left)
	}
	if vmOf(l.List(), "ca") != nil {
		t.Fatal("ca still listed")
	}
}

func TestCntDemoFolder(t *testing.T) {
	needRunc(t)
	dir := t.TempDir()
	files := map[string]string{
		"topology": `<TOPOLOGY>
  <VM> <name> r1 </name> <type> CNT </type> <eth> <vlan> lan_a </vlan> </eth> </VM>
  <VM> <name> r2 </name> <type> cnt </type> <eth> <vlan> lan_a </vlan> </eth> </VM>
</TOPOLOGY>
`,
		"files_to_delete_from_all_targets":           "rm -f /etc/cloonix-release\n",
		"files_to_add_in_all_targets/etc/motd":       "all\n",
		"files_to_add_in_r1/etc/motd":                "r1 only\n",
		"files_to_add_in_all_targets/etc/rc.d/S10ip": "#!/bin/sh\nn=$(hostname | tr -d r)\nip addr add 10.79.0.$n/24 dev eth0\n",
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := NewLab(t, "<no_nat>true</no_nat>")
	out, err := l.RunTimeout(5*time.Minute, "fconf", "load", dir)
	if err != nil {
		t.Fatalf("fconf load: %v\n%s", err, out)
	}
	Eventually(t, time.Minute, "r1 and r2 running", func() error {
		lab := l.List()
		for _, n := range []string{"r1", "r2"} {
			if v := vmOf(lab, n); v == nil || v.State != "running" || v.Type != "cnt" {
				return fmt.Errorf("%s: %+v", n, v)
			}
		}
		return nil
	})
	if got := l.vmMust("r1", "cat", "/etc/motd"); got != "r1 only\n" {
		t.Fatalf("r1 motd %q", got)
	}
	if got := l.vmMust("r2", "cat", "/etc/motd"); got != "all\n" {
		t.Fatalf("r2 motd %q", got)
	}
	if _, _, code := l.vmRun("r2", "test", "-e", "/etc/cloonix-release"); code == 0 {
		t.Fatal("the delete commands did not run")
	}
	if !l.canPing("r1", "10.79.0.2") {
		t.Fatal("r1 cannot ping r2 (addresses from the demo's rc.d script)")
	}
	saved := filepath.Join(t.TempDir(), "saved.xml")
	msg := l.MustRun("fconf", "save", saved)
	if b, _ := os.ReadFile(saved); strings.Count(string(b), "<type> CNT </type>") != 2 {
		t.Fatalf("fconf save: %s\n%s", msg, b)
	}
}

func TestCnt50(t *testing.T) {
	needRunc(t)
	cntMany(t, 50, 3*time.Minute)
}

// TestCnt500 is make test-long's: 500 container nodes on one lan.
func TestCnt500(t *testing.T) {
	if os.Getenv("CLOONIX_LONG") == "" {
		t.Skip("500 nodes: make test-long (CLOONIX_LONG=1)")
	}
	needRunc(t)
	cntMany(t, 500, 20*time.Minute)
}

// cntMany loads n cnt nodes on one lan from one topology file, waits
// until all run, gives each an address, checks every node pings n1 and
// n1 pings the last, then stops the lab and checks nothing is left.
func cntMany(t *testing.T, n int, wait time.Duration) {
	var b strings.Builder
	b.WriteString("<TOPOLOGY>\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "<VM><name>n%d</name><type>CNT</type><eth><vlan>big</vlan></eth></VM>\n", i)
	}
	b.WriteString("</TOPOLOGY>\n")
	topo := filepath.Join(t.TempDir(), "topology.xml")
	os.WriteFile(topo, []byte(b.String()), 0o644)
	l := NewLab(t, "<no_nat>true</no_nat>")
	start := time.Now()
	if out, err := l.RunTimeout(wait+10*time.Minute, "fconf", "load", topo); err != nil {
		t.Fatalf("fconf load: %v\n%s", err, out)
	}
	Eventually(t, wait, fmt.Sprint(n, " nodes running"), func() error {
		lab := l.List()
		run := 0
		for _, v := range lab.VMs {
			if v.State == "running" {
				run++
			}
		}
		if run != n {
			return fmt.Errorf("%d of %d running", run, n)
		}
		return nil
	})
	t.Logf("%d cnt nodes running %v after fconf load", n, time.Since(start))
	addr := func(i int) string { return fmt.Sprintf("10.80.%d.%d", i/250, i%250+1) }
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			l.vmMust(fmt.Sprintf("n%d", i), "ip", "addr", "add", addr(i)+"/16", "dev", "eth0")
		}()
	}
	wg.Wait()
	failed := make(chan string, n)
	for i := 2; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if !l.canPing(fmt.Sprintf("n%d", i), addr(1)) {
				failed <- fmt.Sprintf("n%d cannot ping n1", i)
			}
		}()
	}
	wg.Wait()
	close(failed)
	for f := range failed {
		t.Error(f)
	}
	if !l.canPing("n1", addr(n)) {
		t.Errorf("n1 cannot ping n%d", n)
	}
	t.Logf("pings done %v after fconf load", time.Since(start))
	pids := map[string]int{}
	for _, v := range l.List().VMs {
		pids[v.Name] = v.Pid
	}
	l.MustRun("stop")
	for name, pid := range pids {
		if left := cntLeft(l, name, pid); len(left) > 0 {
			t.Errorf("stop left %s: %v", name, left)
		}
	}
}

func TestCntCrashAndBadInput(t *testing.T) {
	needRunc(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	for args, want := range map[string]string{
		"--rootfs nosuch":                       "cloonix bulk build nosuch",
		"--rootfs /nonexistent/tree":            "no such file",
		"--rootfs docker-archive:/etc/hostname": "docker save archive",
		"--eth 33":                              "from 0 to 32",
		"--mem 4":                               "--mem from 32",
		"--kernel linux.uml":                    "drop --kernel",
	} {
		out, err := l.Run(append([]string{"ctrl", "add", "vm", "bad", "--type", "cnt", "--wait"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: %v %q, want %q", args, err, out, want)
		}
	}
	if lab := l.List(); len(lab.VMs) != 0 || len(lab.Ports) != 0 {
		t.Fatalf("bad input left %+v", lab)
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "bad")); err == nil {
		t.Fatal("bad input left a directory")
	}
	l.addVMs([]string{"k1"}, "--type", "cnt")
	pid := vmOf(l.List(), "k1").Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, "k1 crashed", func() error {
		if v := vmOf(l.List(), "k1"); v == nil || v.State != "crashed" {
			return fmt.Errorf("k1: %+v", v)
		}
		return nil
	})
	l.MustRun("ctrl", "del", "vm", "k1")
	if left := cntLeft(l, "k1", pid); len(left) > 0 {
		t.Fatalf("del of a crashed node left %v", left)
	}
}

func TestCntConsole(t *testing.T) {
	needRunc(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"kc"}, "--type", "cnt")
	l.consoleShell("kc", "echo console-$((6*7))-$(hostname)", "console-42-kc")
}
