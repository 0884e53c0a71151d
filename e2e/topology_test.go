package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Topology files, demo folders and fconf (docs/topology.md), with real
// guests: busybox on UML for speed, debian-frr for the OSPF demo.

// copyDemo copies a demo folder into a fresh temporary one, keeping modes
// and symlinks, so a test may change it.
func copyDemo(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// exec runs a command in a guest through its agent.
func (l *Lab) exec(vm string, args ...string) (string, error) {
	return l.RunTimeout(time.Minute, append([]string{"exec", vm, "--"}, args...)...)
}

func (l *Lab) mustExec(vm string, args ...string) string {
	l.t.Helper()
	out, err := l.exec(vm, args...)
	if err != nil {
		l.t.Fatalf("exec %s %v: %v\n%s", vm, args, err, out)
	}
	return out
}

// load runs `fconf load` and fails the test when it does not exit 0.
func (l *Lab) load(path string, extra ...string) string {
	l.t.Helper()
	out, err := l.RunTimeout(10*time.Minute, append([]string{"fconf", "load", path}, extra...)...)
	if err != nil {
		l.t.Fatalf("fconf load %s: %v\n%s", path, err, out)
	}
	return out
}

func (l *Lab) pids() map[string]int {
	l.t.Helper()
	m := map[string]int{}
	for _, v := range l.List().VMs {
		m[v.Name] = v.Pid
	}
	return m
}

func (l *Lab) allRunning(names ...string) {
	l.t.Helper()
	lab := l.List()
	if len(lab.VMs) != len(names) {
		l.t.Fatalf("VMs %+v, want %v", lab.VMs, names)
	}
	for i, v := range lab.VMs {
		if v.Name != names[i] || v.State != "running" {
			l.t.Fatalf("VM %d is %s %s, want %s running", i, v.Name, v.State, names[i])
		}
	}
}

// pings tells whether vm reaches addr: one echo answered within three
// tries of 2 s (a guest retries ARP for an address that did not answer
// only after its probes ran out).
func (l *Lab) pings(vm, addr string) bool {
	for i := 0; i < 3; i++ {
		if _, err := l.exec(vm, "ping", "-c1", "-W2", addr); err == nil {
			return true
		}
	}
	return false
}

// TestFconfLanRule loads demos/lan_rule (the seed's A/B/C picture) and
// checks the lan rule with pings; then a changed file moves A onto
// lan_two live: A pings C and no guest was rebooted.
func TestFconfLanRule(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	demo := absPath(t, "../demos/lan_rule")

	plan := l.MustRun("fconf", "load", demo, "--plan")
	for _, want := range []string{"add vm A (uml, 128 MB, busybox, 1 eth)", "attach B:eth0 lan_one", "attach B:eth0 lan_two", "place vm C at 500,200"} {
		if !strings.Contains(plan, want) {
			t.Errorf("--plan lacks %q:\n%s", want, plan)
		}
	}
	if n := len(l.List().VMs); n != 0 {
		t.Fatalf("--plan made %d VMs", n)
	}

	out := l.load(demo)
	if !strings.Contains(out, "lab ready: 3 guests") {
		t.Errorf("load output:\n%s", out)
	}
	l.allRunning("A", "B", "C")
	// The rc.d files gave the addresses; /etc/hosts came from all_targets.
	if !l.pings("A", "B") || !l.pings("B", "C") || !l.pings("C", "10.0.0.2") {
		t.Fatal("A-B or B-C do not ping")
	}
	if l.pings("A", "C") {
		t.Fatal("A pings C: they share no lan")
	}

	// Loading the same folder again changes nothing.
	if out := l.load(demo); !strings.Contains(out, "nothing to change") {
		t.Errorf("second load:\n%s", out)
	}

	// The file now puts A on both lans: one attach, applied live.
	before := l.pids()
	moved := copyDemo(t, demo)
	top := filepath.Join(moved, "topology")
	b, _ := os.ReadFile(top)
	s := strings.Replace(string(b), "<eth> <vlan > lan_one </vlan> </eth>", "<eth> <vlan > lan_one </vlan> <vlan> lan_two </vlan> </eth>", 1)
	if s == string(b) {
		t.Fatal("demo topology not as expected")
	}
	os.WriteFile(top, []byte(s), 0o644)
	if plan := strings.TrimSpace(l.MustRun("fconf", "load", moved, "--plan")); plan != "attach A:eth0 lan_two" {
		t.Fatalf("plan:\n%s", plan)
	}
	out = l.load(moved)
	if !strings.Contains(out, "attach A:eth0 lan_two") || !strings.Contains(out, "lab updated") {
		t.Errorf("load output:\n%s", out)
	}
	if !l.pings("A", "C") {
		t.Fatal("A does not ping C after the attach")
	}
	if after := l.pids(); !reflect.DeepEqual(before, after) {
		t.Fatalf("pids changed by a lan change: %v -> %v", before, after)
	}
	l.allRunning("A", "B", "C")

	// Back to the shipped file: detached again, still no reboot.
	l.load(demo)
	if l.pings("A", "C") {
		t.Fatal("A still pings C after the detach")
	}
	if after := l.pids(); !reflect.DeepEqual(before, after) {
		t.Fatalf("pids changed: %v -> %v", before, after)
	}
}

// TestFconfDemoFiles: a demo folder's files reach a real guest (content,
// mode, symlinks, per-VM winning over all_targets) and its delete
// commands ran; a folder whose symlink leaves its tree, and a malformed
// file, are refused before anything changes.
func TestFconfDemoFiles(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	dir := t.TempDir()
	write := func(p, content string, mode os.FileMode) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode) // past the umask
	}
	link := func(p, target string) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	write("topology", `<TOPOLOGY> <config_path> . </config_path>
  <VM> <name> X </name> <type> UML </type> <mem> 128 </mem> <rootfs> busybox </rootfs> <eth> </eth> </VM>
  <VM> <name> Y </name> <type> UML </type> <mem> 128 </mem> <rootfs> busybox </rootfs> </VM>
</TOPOLOGY>`, 0o644)
	// /etc/rc.d/README is in the busybox image; the delete commands remove it.
	write("files_to_delete_from_all_targets", "rm -f /etc/rc.d/README\n", 0o644)
	write("files_to_add_in_all_targets/etc/demo/shared", "from all targets\n", 0o644)
	write("files_to_add_in_all_targets/etc/demo/who", "all\n", 0o644)
	write("files_to_add_in_X/etc/demo/who", "X itself\n", 0o600)
	write("files_to_add_in_X/usr/local/bin/hello", "#!/bin/sh\necho hello from X\n", 0o750)
	link("files_to_add_in_X/etc/demo/hello-link", "../../usr/local/bin/hello")
	link("files_to_add_in_X/etc/demo/hostname-link", "/etc/hostname")
	write("files_to_add_in_X/etc/rc.d/S50_mark", "#!/bin/sh\necho ran > /tmp/S50_mark\n", 0o755)

	out := l.load(dir)
	if !strings.Contains(out, "lab ready: 2 guests") {
		t.Errorf("load output:\n%s", out)
	}
	checks := []struct {
		vm   string
		argv []string
		want string
	}{
		{"X", []string{"cat", "/etc/demo/shared"}, "from all targets\n"},
		{"X", []string{"cat", "/etc/demo/who"}, "X itself\n"},
		{"Y", []string{"cat", "/etc/demo/who"}, "all\n"},
		{"X", []string{"stat", "-c", "%a", "/etc/demo/who"}, "600\n"},
		{"X", []string{"stat", "-c", "%a", "/usr/local/bin/hello"}, "750\n"},
		{"X", []string{"readlink", "/etc/demo/hello-link"}, "../../usr/local/bin/hello\n"},
		{"X", []string{"/etc/demo/hello-link"}, "hello from X\n"},
		{"X", []string{"readlink", "/etc/demo/hostname-link"}, "/etc/hostname\n"},
		{"X", []string{"cat", "/tmp/S50_mark"}, "ran\n"},
		{"Y", []string{"sh", "-c", "test ! -e /etc/rc.d/README && echo gone"}, "gone\n"},
		{"X", []string{"sh", "-c", "test ! -e /etc/rc.d/README && echo gone"}, "gone\n"},
		{"Y", []string{"sh", "-c", "test ! -e /usr/local/bin/hello && echo absent"}, "absent\n"},
		{"X", []string{"hostname"}, "X\n"},
	}
	for _, c := range checks {
		if got := l.mustExec(c.vm, c.argv...); got != c.want {
			t.Errorf("%s: %v = %q, want %q", c.vm, c.argv, got, c.want)
		}
	}

	// Refusals: nothing reaches the switch.
	before := l.pids()
	bad := copyDemo(t, dir)
	os.Symlink("../../../../../etc/shadow", filepath.Join(bad, "files_to_add_in_all_targets/etc/demo/evil"))
	os.WriteFile(filepath.Join(bad, "topology"), []byte(strings.Replace(mustRead(t, filepath.Join(dir, "topology")), "<name> Y </name>", "<name> Z </name>", 1)), 0o644)
	out, err := l.Run("fconf", "load", bad)
	if err == nil || !strings.Contains(out, "evil: a symlink to ../../../../../etc/shadow would leave") {
		t.Errorf("escaping symlink: err %v\n%s", err, out)
	}
	malformed := filepath.Join(t.TempDir(), "lab.xml")
	os.WriteFile(malformed, []byte("<TOPOLOGY>\n<VM> <name> W </name>\n<eth> <vlan> </vlan> </eth>\n</VM>\n<VM> <name> V </name> <mem> lots </mem> </VM>\n</TOPOLOGY>\n"), 0o644)
	out, err = l.Run("fconf", "load", malformed)
	if err == nil || !strings.Contains(out, malformed+`:3: VM "W": eth 0 names lan "" (empty)`) || !strings.Contains(out, malformed+`:5: VM "V": <mem> is "lots"`) {
		t.Errorf("malformed file: err %v\n%s", err, out)
	}
	if after := l.pids(); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused load changed the lab: %v -> %v", before, after)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// normalLab is `ctrl list --json` without what differs between two
// switches running the same lab: pids, counters, restarts, the network
// name, connection flags, and the work_dir in socket paths.
func normalLab(t *testing.T, l *Lab) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(l.MustRun("ctrl", "list", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range []string{"pid", "counters", "restarts", "network", "connected"} {
				delete(x, k)
			}
			for k, y := range x {
				x[k] = walk(y)
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		case string:
			return strings.ReplaceAll(x, l.Dir, "WORK_DIR")
		}
		return x
	}
	return walk(v)
}

// TestFconfRoundTrip: a lab loaded, saved, and loaded into an empty
// switch is the same lab (ctrl list --json), and saving that gives the
// same file.
func TestFconfRoundTrip(t *testing.T) {
	needE2E(t)
	port := freePort(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "lab.xml")
	os.WriteFile(src, []byte(fmt.Sprintf(`<TOPOLOGY>
  <VM> <name> A </name> <type> uml </type> <mem> 128 </mem> <rootfs> busybox </rootfs>
       <eth> <vlan> lan_one </vlan> </eth> <eth> <vlan> lan_x </vlan> <vlan> lan_one </vlan> </eth> <eth/>
       <x> 10 </x> <y> 20 </y> </VM>
  <VM> <name> B </name> <type> uml </type> <mem> 160 </mem> <rootfs> busybox </rootfs>
       <eth> <vlan> lan_one </vlan> <impair> delay=5ms loss=1%% </impair> </eth> </VM>
  <TUX> <name> up </name> <type> slirp </type> <subnet> 10.9.0.0/24 </subnet> <vlan> lan_x </vlan>
        <forward> tcp 127.0.0.1:%d 10.9.0.15:80 </forward> </TUX>
  <LAN> <name> lone </name> <x> 1 </x> <y> 2 </y> </LAN>
</TOPOLOGY>
`, port)), 0o644)

	l1 := NewLab(t, "<no_nat>true</no_nat>")
	l1.load(src)
	l1.allRunning("A", "B")
	saved1 := filepath.Join(dir, "saved1.xml")
	l1.MustRun("fconf", "save", saved1)
	want := normalLab(t, l1)
	// The forward's host port is free again once the first switch stops.
	l1.MustRun("stop")

	l2 := NewLab(t, "<no_nat>true</no_nat>")
	if n := len(l2.List().VMs); n != 0 {
		t.Fatalf("the second switch is not empty: %d VMs", n)
	}
	l2.load(saved1)
	got := normalLab(t, l2)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("loaded lab differs from the saved one:\n%s\nwant\n%s", g, w)
	}
	saved2 := filepath.Join(dir, "saved2.xml")
	l2.MustRun("fconf", "save", saved2)
	if a, b := mustRead(t, saved1), mustRead(t, saved2); a != b {
		t.Errorf("saving again gives another file:\n%s\n%s", a, b)
	}
	for _, want := range []string{"<impair> delay=5ms loss=1% </impair>", "<subnet> 10.9.0.0/24 </subnet>", "<name> lone </name>", "<x> 10 </x>"} {
		if !strings.Contains(mustRead(t, saved1), want) {
			t.Errorf("saved file lacks %q:\n%s", want, mustRead(t, saved1))
		}
	}
}

// TestFconfOSPF runs demos/ospf end to end (about a minute on 2 cores):
// five debian-frr guests, FRR
// converges, HOST1 pings HOST2 across the routers, and again by ROUTER2
// once the direct ROUTER1-ROUTER3 lan is cut.
func TestFconfOSPF(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	out := l.load(absPath(t, "../demos/ospf"))
	if !strings.Contains(out, "lab ready: 5 guests") {
		t.Errorf("load output:\n%s", out)
	}
	Eventually(t, 3*time.Minute, "HOST1 pings HOST2", func() error {
		if !l.pings("HOST1", "10.3.0.10") {
			return fmt.Errorf("no answer")
		}
		return nil
	})
	// HOST1 may reach HOST2 by the direct lan before ROUTER2 has joined.
	Eventually(t, time.Minute, "ROUTER1 learns every lan by OSPF", func() error {
		routes := l.mustExec("ROUTER1", "vtysh", "-c", "show ip route ospf")
		for _, want := range []string{"O>* 10.3.0.0/24", "O>* 10.23.0.0/24"} {
			if !strings.Contains(routes, want) {
				return fmt.Errorf("no OSPF route %s yet:\n%s", want, routes)
			}
		}
		return nil
	})
	// Cut the direct link: OSPF finds the way through ROUTER2.
	l.MustRun("ctrl", "detach", "ROUTER1:eth2", "lan_r13")
	Eventually(t, time.Minute, "HOST1 pings HOST2 through ROUTER2", func() error {
		out, err := l.exec("ROUTER1", "ip", "route", "show", "10.3.0.0/24")
		if err != nil || !strings.Contains(out, "via 10.12.0.2") {
			return fmt.Errorf("ROUTER1's route to HOST2's lan is not through ROUTER2: %v %s", err, out)
		}
		if !l.pings("HOST1", "10.3.0.10") {
			return fmt.Errorf("no answer")
		}
		return nil
	})
}

// TestFconfFailures: a VM the switch refuses (unknown image) takes back
// the VMs already added by that load, so nothing changed; a guest not
// ready in time is named and the exit code is 1.
func TestFconfFailures(t *testing.T) {
	needE2E(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	dir := t.TempDir()
	refused := filepath.Join(dir, "refused.xml")
	os.WriteFile(refused, []byte(`<TOPOLOGY>
  <VM> <name> P </name> <type> UML </type> <mem> 128 </mem> <rootfs> busybox </rootfs> <eth> <vlan> l </vlan> </eth> </VM>
  <VM> <name> Q </name> <type> UML </type> <mem> 128 </mem> <rootfs> no_such_image </rootfs> </VM>
</TOPOLOGY>`), 0o644)
	out, err := l.Run("fconf", "load", refused)
	if err == nil || !strings.Contains(out, "add vm Q") || !strings.Contains(out, "no_such_image") || !strings.Contains(out, "nothing was changed") {
		t.Errorf("refused VM: err %v\n%s", err, out)
	}
	Eventually(t, 30*time.Second, "P taken back", func() error {
		lab := l.List()
		if len(lab.VMs) != 0 || len(lab.Lans) != 0 {
			return fmt.Errorf("lab after a refused load: %+v %+v", lab.VMs, lab.Lans)
		}
		return nil
	})

	// S is slow for sure: its rc.d script sleeps, and a guest is ready
	// only after its rc.d ran (a bare busybox guest was ready in 0.2 s,
	// too soon for a 100 ms timeout checked at the next poll).
	slow := filepath.Join(dir, "slow")
	rc := filepath.Join(slow, "files_to_add_in_S", "etc", "rc.d")
	if err := os.MkdirAll(rc, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rc, "S10_slow"), []byte("#!/bin/sh\nsleep 3\n"), 0o755)
	os.WriteFile(filepath.Join(slow, "topology"), []byte(`<TOPOLOGY>
  <VM> <name> S </name> <type> UML </type> <mem> 128 </mem> <rootfs> busybox </rootfs> </VM>
</TOPOLOGY>`), 0o644)
	out, err = l.Run("fconf", "load", slow, "--timeout", "100ms")
	if err == nil || !strings.Contains(out, "1 of 1 guests failed: S (still booting, over --timeout") {
		t.Errorf("slow guest: err %v\n%s", err, out)
	}
	// The guest stays; a second load waits for it (or finds it ready).
	out = l.load(slow)
	if !strings.Contains(out, "lab ready: 1 guests") && !strings.Contains(out, "nothing to change") {
		t.Errorf("second load:\n%s", out)
	}
	l.allRunning("S")
}
