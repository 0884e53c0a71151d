package labfmt

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/topology"
)

func TestKatharaDemo(t *testing.T) {
	lab, err := Read("../../demos/kathara_ospf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if lab.Format != "kathara" || lab.Name != "ospf_stub" {
		t.Errorf("format %q name %q", lab.Format, lab.Name)
	}
	var order []string
	for _, n := range lab.Nodes {
		order = append(order, n.Name)
	}
	if got := strings.Join(order, " "); got != "r1 r2 r3 pc1 pc2" {
		t.Errorf("boot order %s", got)
	}
	r3 := lab.Node("r3")
	if !reflect.DeepEqual(r3.Eths, map[int]string{0: "C", 2: "D"}) || r3.Mem != 256 || r3.Rootfs != "debian-frr" {
		t.Errorf("r3 = %+v", r3)
	}
	if pc1 := lab.Node("pc1"); !reflect.DeepEqual(pc1.After, []string{"r1"}) || pc1.Mem != 192 {
		t.Errorf("pc1 = %+v", pc1)
	}
	boot := lab.Node("pc1").Boot
	sh, own := strings.Index(boot, "shared.startup"), strings.Index(boot, "pc1.startup")
	if sh < 0 || own < sh || !strings.Contains(boot, "export 'LAB_ROLE=client'") || !strings.Contains(boot, "disable_ipv6=1") {
		t.Errorf("pc1 boot script:\n%s", boot)
	}
	if !strings.Contains(lab.Node("r2").Boot, "sysctl -qw 'net.ipv4.ip_forward=1'") {
		t.Errorf("r2 boot script:\n%s", lab.Node("r2").Boot)
	}
	if len(lab.Warnings) != 1 || !strings.Contains(lab.Warnings[0], `lab.conf:17: option "num_terms"`) {
		t.Errorf("warnings %q", lab.Warnings)
	}
	if plan := lab.Plan(); !strings.Contains(plan, "LAB_DESCRIPTION: OSPF with a stub area") || !strings.Contains(plan, "node pc2: image kathara/base -> rootfs debian-frr, boots after r3") {
		t.Errorf("plan:\n%s", plan)
	}
	roundTrip(t, lab, map[string][]string{
		"r1":  {"etc/frr/frr.conf", "etc/frr/daemons", "shared/hosts", "etc/cloonix-lab/shared.startup", "etc/cloonix-lab/r1.startup", BootScript},
		"pc2": {"shared/hosts", "etc/cloonix-lab/pc2.startup", BootScript},
	})
}

// roundTrip writes the lab and loads the folder as `fconf load` does:
// the same topology, and the files where they belong.
func roundTrip(t *testing.T, lab *Lab, files map[string][]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "native")
	if err := lab.Write(dir, "uml"); err != nil {
		t.Fatal(err)
	}
	demo, err := topology.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := lab.Topology("uml")
	got := demo.Topology
	for i := range got.VMs {
		got.VMs[i].Line, want.VMs[i].Line = 0, 0
		for j := range got.VMs[i].Eths {
			got.VMs[i].Eths[j].Line = 0
		}
	}
	for i := range got.Tux {
		got.Tux[i].Line = 0
	}
	if !reflect.DeepEqual(got.VMs, want.VMs) || !reflect.DeepEqual(got.Tux, want.Tux) {
		t.Errorf("loaded topology differs:\n got %+v\nwant %+v", got, want)
	}
	for node, fs := range files {
		for _, f := range fs {
			if _, err := os.Stat(filepath.Join(dir, topology.TargetPrefix+node, f)); err != nil {
				t.Errorf("%s: %v", node, err)
			}
		}
	}
	// A second conversion into the same folder replaces the first.
	if err := lab.Write(dir, "uml"); err != nil {
		t.Errorf("writing again: %v", err)
	}
}

func TestKatharaOptions(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "lab.conf", `LAB_NAME=x
a[1]=L1
a[bridged]=true
a[port]="8080:80/tcp"
a[exec]="echo hi"
a[ipv6]=true
b[0]="L1/02:00:00:00:00:01"
b[port]=2222:22
b[image]=acme/router:1
b[shell]=/bin/bash
c[0]=L1
c[mem]=64m
`)
	lab, err := Read(dir, Options{Images: map[string]string{"acme/router": "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := lab.Node("a"), lab.Node("b")
	if a.NatEth != 2 || b.NatEth != 1 || a.NatAddr != "10.0.2.100" || b.NatAddr != "10.0.2.101" || b.Rootfs != "busybox" {
		t.Errorf("a %+v b %+v", a, b)
	}
	if strings.Contains(a.Boot, "disable_ipv6") || !strings.Contains(a.Boot, `$SH -c 'echo hi'`) || !strings.Contains(a.Boot, "ip addr replace 10.0.2.100/24 dev eth2") {
		t.Errorf("a boot:\n%s", a.Boot)
	}
	top := lab.Topology("kvm")
	want := []topology.Forward{{Proto: "tcp", Host: "127.0.0.1:8080", Guest: "10.0.2.100:80"}, {Proto: "tcp", Host: "127.0.0.1:2222", Guest: "10.0.2.101:22"}}
	if len(top.Tux) != 1 || top.Tux[0].Name != NatTux || !reflect.DeepEqual(top.Tux[0].Forwards, want) {
		t.Errorf("tux %+v", top.Tux)
	}
	if len(top.VMs[0].Eths) != 3 || top.VMs[0].Eths[0].Lans != nil || top.VMs[0].Eths[2].Lans[0] != NatLan || top.VMs[0].Type != "kvm" {
		t.Errorf("a's eths %+v", top.VMs[0])
	}
	if c := lab.Node("c"); c.Mem != 192 || len(lab.Warnings) != 3 || !strings.Contains(strings.Join(lab.Warnings, "\n"), "node c: 64 MB is too little for debian-frr; given 192 MB") {
		t.Errorf("c %+v, warnings %q", c, lab.Warnings)
	}
	roundTrip(t, lab, map[string][]string{"a": {BootScript}})
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKatharaErrors(t *testing.T) {
	for _, c := range []struct {
		name, conf, dep, want string
	}{
		{"eth not a number", "r1[0]=A\nr1[x]=B\n", "", `lab.conf:2: r1[x]: eth index "x" is not a number`},
		{"eth twice", "r1[0]=A\nr1[0]=B\n", "", `lab.conf:2: r1[0]: eth0 is already on "A"`},
		{"eth range", "r1[99]=A\n", "", "lab.conf:1: r1[99]: eth index out of range"},
		{"no equal", "r1[0]\n", "", `lab.conf:1: "r1[0]" is not DEVICE[ARG]=VALUE`},
		{"no bracket", "r1[0=A\n", "", "lab.conf:1: \"r1[0\": missing ]"},
		{"bad mem", "r1[0]=A\nr1[mem]=lots\n", "", `lab.conf:2: r1[mem]: "lots": give a size`},
		{"bad port", "r1[port]=99999\n", "", `lab.conf:1: r1[port]: "99999": port "99999" is not 1..65535`},
		{"bad bool", "r1[bridged]=maybe\n", "", `lab.conf:1: r1[bridged]: "maybe" is not true or false`},
		{"bad sysctl", "r1[sysctl]=kernel.x=1\n", "", "lab.conf:1: r1[sysctl]: \"kernel.x=1\": give net.KEY=VALUE"},
		{"bad name", "r/1[0]=A\n", "", `lab.conf:1: device name "r/1" has '/'`},
		{"bad lan", "r1[0]=A B\n", "", `lab.conf:1: r1[0]: collision domain name "A B" has ' '`},
		{"not meta", "FOO=1\nr1[0]=A\n", "", `lab.conf:1: "FOO": a device line`},
		{"empty", "# nothing\n", "", "lab.conf: no device"},
		{"dep unknown", "r1[0]=A\n", "r1: r9\n", `lab.dep:1: r1 depends on "r9"`},
		{"dep cycle", "r1[0]=A\nr2[0]=A\n", "r1: r2\nr2: r1\n", "boot dependencies form a cycle: r1 -> r2 -> r1"},
		{"dep syntax", "r1[0]=A\n", "r1 r2\n", `lab.dep:1: "r1 r2": write DEVICE:`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "lab.conf", c.conf)
			if c.dep != "" {
				write(t, dir, "lab.dep", c.dep)
			}
			_, err := Read(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %q", err, c.want)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct{ path, format string }{
		{"../../demos/kathara_ospf", "kathara"},
		{"../../demos/kathara_ospf/lab.conf", "kathara"},
		{"../../demos/clab_ring", "containerlab"},
		{"../../demos/clab_ring/ring.clab.yml", "containerlab"},
		{"../../demos/ospf", ""},
		{"../../demos/ospf/topology", ""},
		{"/nonexistent", ""},
	} {
		f, _, ok := Detect(c.path)
		if f != c.format || ok != (c.format != "") {
			t.Errorf("Detect(%s) = %q, %v; want %q", c.path, f, ok, c.format)
		}
	}
}

func TestImages(t *testing.T) {
	user := map[string]string{"acme/r": "busybox", "kathara/frr:v2": "other"}
	for _, c := range []struct {
		image, rootfs string
		known         bool
	}{
		{"kathara/frr", "debian-frr", true},
		{"kathara/frr:latest", "debian-frr", true},
		{"kathara/frr:v2", "other", true},
		{"docker.io/library/alpine:3.19", "debian-frr", true},
		{"acme/r:1@sha256:abc", "busybox", true},
		{"acme/unknown", FallbackRootfs, false},
		{"localhost:5000/x", FallbackRootfs, false},
	} {
		r, known, _ := mapImage(c.image, user)
		if r != c.rootfs || known != c.known {
			t.Errorf("mapImage(%s) = %s, %v", c.image, r, known)
		}
	}
	m := map[string]string{}
	if err := ParseImageFlag(m, "a/b=busybox"); err != nil || m["a/b"] != "busybox" {
		t.Errorf("ParseImageFlag: %v %v", m, err)
	}
	if err := ParseImageFlag(m, "a/b"); err == nil {
		t.Error("ParseImageFlag took a/b")
	}
}

func TestWriteRefusesAForeignFolder(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "precious.txt", "x")
	lab := &Lab{Src: "x", Nodes: []*Node{{Name: "a", NatEth: -1}}}
	if err := lab.Write(dir, "uml"); err == nil || !strings.Contains(err.Error(), "not empty (holds precious.txt)") {
		t.Errorf("got %v", err)
	}
}

func FuzzLabConf(f *testing.F) {
	for _, s := range []string{"r1[0]=A\nr1[image]=kathara/frr\nLAB_NAME=x\n", "a[port]=1:2/udp\na[bridged]=true\n", "a[mem]=1g\na[cpus]=1.5\n"} {
		f.Add(s)
	}
	b, _ := os.ReadFile("../../demos/kathara_ospf/lab.conf")
	f.Add(string(b))
	f.Fuzz(func(t *testing.T, s string) {
		lab, _, err := parseLabConf("lab.conf", []byte(s), Options{})
		if err != nil {
			return
		}
		for _, n := range lab.Nodes {
			if n.Rootfs == "" {
				t.Fatalf("node %s has no rootfs", n.Name)
			}
		}
		top := lab.Topology("uml")
		if _, err := topology.Parse("t", top.Bytes()); err != nil {
			t.Fatalf("the converted topology does not parse: %v\n%s", err, top.Bytes())
		}
	})
}
