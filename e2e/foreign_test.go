package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ospfFull waits until vm has n OSPF neighbors in state Full.
func (l *Lab) ospfFull(vm string, n int) {
	l.t.Helper()
	Eventually(l.t, 3*time.Minute, vm+" has "+fmt.Sprint(n)+" OSPF neighbors Full", func() error {
		out, err := l.exec(vm, "vtysh", "-c", "show ip ospf neighbor")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if c := strings.Count(out, "Full/"); c != n {
			return fmt.Errorf("%d Full:\n%s", c, out)
		}
		return nil
	})
}

func (l *Lab) pingsEventually(from, addr string) {
	l.t.Helper()
	Eventually(l.t, 3*time.Minute, from+" pings "+addr, func() error {
		if !l.pings(from, addr) {
			return fmt.Errorf("no answer")
		}
		return nil
	})
}

// convertReload converts src with `fconf convert`, checks the folder is
// the one `fconf load` ran (same files, same bytes), and loads it: the
// running lab already matches it.
func (l *Lab) convertReload(src, as string) {
	l.t.Helper()
	dir := filepath.Join(l.t.TempDir(), "converted")
	l.MustRun("fconf", "convert", src, dir, "--as", as)
	ran, _ := filepath.Glob(filepath.Join(l.Dir, "labs", "*"))
	if len(ran) != 1 {
		l.t.Fatalf("converted folders the load ran from: %v", ran)
	}
	if a, b := treeText(l.t, dir), treeText(l.t, ran[0]); a != b {
		l.t.Errorf("fconf convert wrote another folder than the one loaded:\n%s\n---\n%s", a, b)
	}
	out := l.load(dir)
	if !strings.Contains(out, "nothing to change") {
		l.t.Errorf("loading the converted folder changed the lab:\n%s", out)
	}
}

// treeText lists a folder's files with their modes and contents (the
// topology file's path-free).
func treeText(t *testing.T, root string) string {
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "== %s %v\n%s", rel, fi.Mode(), data)
		return nil
	})
	return b.String()
}

// refused loads a bad lab and checks the error names the line and the
// running lab is as before.
func (l *Lab) refused(path, as, want string, vms int) {
	l.t.Helper()
	out, err := l.Run("fconf", "load", path, "--as", as)
	if err == nil || !strings.Contains(out, want) {
		l.t.Errorf("fconf load %s: err %v, want %q in:\n%s", path, err, want, out)
	}
	if got := len(l.List().VMs); got != vms {
		l.t.Errorf("a refused load changed the lab: %d VMs, want %d", got, vms)
	}
}

// TestForeignKathara runs demos/kathara_ospf (three FRR routers, OSPF
// with a stub area, two hosts, shared/, lab.dep) as container nodes: FRR
// starts from the startup files' `systemctl start frr` (the nodes' shim)
// with the lab's /etc/frr/daemons and frr.conf. (TestForeignContainerlab
// keeps the UML path tested.)
func TestForeignKathara(t *testing.T) {
	needRunc(t)
	needImages(t, "debian-frr.img")
	l := NewLab(t, "")
	src := absPath(t, "../demos/kathara_ospf")
	plan, err := l.Run("fconf", "load", src, "--as", "cnt", "--plan")
	if err != nil || !strings.Contains(plan, "LAB_DESCRIPTION: OSPF with a stub area") || !strings.Contains(plan, "add vm pc1") {
		t.Errorf("--plan: %v\n%s", err, plan)
	}
	out := l.load(src, "--as", "cnt")
	if !strings.Contains(out, "lab ready: 5 guests") || !strings.Contains(out, `option "num_terms" is not supported`) {
		t.Errorf("load output:\n%s", out)
	}
	// lab.dep: pc1 is added once r1 is ready.
	r1 := regexp.MustCompile(`(?m)^\s*r1\s+ready`).FindStringIndex(out)
	if pc1 := strings.Index(out, "add vm pc1"); r1 == nil || pc1 < r1[0] {
		t.Errorf("pc1 was not added after r1 was ready:\n%s", out)
	}
	l.ospfFull("r2", 2)
	l.pingsEventually("pc1", "10.0.3.10")
	// r3 is in a stub area: its way out is the default route r2 announces.
	if routes := l.mustExec("r3", "vtysh", "-c", "show ip route ospf"); !strings.Contains(routes, "O>* 0.0.0.0/0") {
		t.Errorf("r3 has no default route from the stub area's border:\n%s", routes)
	}
	// shared/ is at /shared, shared.startup ran (it copied /shared/hosts).
	if hosts := l.mustExec("pc2", "cat", "/etc/hosts"); !strings.Contains(hosts, "10.0.1.10\tpc1") {
		t.Errorf("pc2's /etc/hosts:\n%s", hosts)
	}
	for _, v := range l.List().VMs {
		if v.Type != "cnt" {
			t.Errorf("%s is %s, want cnt", v.Name, v.Type)
		}
	}
	// The daemons file the lab ships chose them: zebra, ospfd, no bgpd.
	if ps := l.mustExec("r1", "ps", "-e", "-o", "comm"); !strings.Contains(ps, "ospfd") || !strings.Contains(ps, "zebra") || strings.Contains(ps, "bgpd") {
		t.Errorf("r1's FRR daemons:\n%s", ps)
	}
	l.convertReload(src, "cnt")

	bad := filepath.Join(t.TempDir(), "bad")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "lab.conf"), []byte("r1[0]=A\n# eth by name\nr1[x]=B\n"), 0o644)
	l.refused(bad, "cnt", "lab.conf:3: r1[x]: eth index \"x\" is not a number", 5)
}

// TestForeignContainerlab runs demos/clab_ring (three FRR routers in a
// ring, two linux hosts set up by exec) as UML guests.
func TestForeignContainerlab(t *testing.T) {
	needImages(t, "debian-frr.img")
	l := NewLab(t, "")
	src := absPath(t, "../demos/clab_ring/ring.clab.yml")
	out := l.load(src, "--as", "uml")
	if !strings.Contains(out, "lab ready: 5 guests") {
		t.Errorf("load output:\n%s", out)
	}
	for _, r := range []string{"r1", "r2", "r3"} {
		l.ospfFull(r, 2)
	}
	l.pingsEventually("h1", "192.168.3.10")
	// binds and the management interface on the nat.
	if motd := l.mustExec("h2", "cat", "/etc/motd"); !strings.Contains(motd, "a linux host of the ring lab") {
		t.Errorf("h2's /etc/motd: %s", motd)
	}
	l.pingsEventually("r1", "10.0.2.2")
	l.convertReload(src, "uml")

	bad := filepath.Join(t.TempDir(), "bad.clab.yml")
	os.WriteFile(bad, []byte("name: bad\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n"), 0o644)
	l.refused(bad, "uml", "bad.clab.yml:6:27: endpoint b:eth1 names node \"b\"", 5)
}
