package labfmt

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/topology"
)

func TestClabDemo(t *testing.T) {
	lab, err := Read("../../demos/clab_ring/ring.clab.yml", Options{As: "cnt"})
	if err != nil {
		t.Fatal(err)
	}
	if lab.Format != "containerlab" || lab.Name != "ring" || len(lab.Nodes) != 5 || len(lab.Warnings) != 0 {
		t.Fatalf("lab %+v", lab)
	}
	r1 := lab.Node("r1")
	wantEths := map[int]string{1: "r1_eth1-r2_eth1", 2: "r3_eth2-r1_eth2", 3: "h1_eth1-r1_eth3"}
	if !reflect.DeepEqual(r1.Eths, wantEths) || r1.NatEth != 0 || r1.Mem != 256 || r1.Image != "quay.io/frrouting/frr:9.1.0" || r1.Rootfs != "debian-frr" {
		t.Errorf("r1 = %+v", r1)
	}
	var daemons string
	for _, f := range r1.Files {
		if f.Guest == "/etc/frr/daemons" {
			daemons = string(f.Data)
		}
	}
	if !strings.Contains(daemons, "ospfd=yes") || !strings.Contains(daemons, "bgpd=no") {
		t.Errorf("r1 daemons:\n%s", daemons)
	}
	if !strings.Contains(r1.Boot, "systemctl start frr.service") || !strings.Contains(r1.Boot, "export 'LAB=ring'") {
		t.Errorf("r1 boot:\n%s", r1.Boot)
	}
	h2 := lab.Node("h2")
	if h1 := lab.Node("h1"); !reflect.DeepEqual(h1.After, []string{"r1"}) {
		t.Errorf("h1 = %+v", h1)
	}
	if h2.Eths[1] != "h2_eth1-r3_eth3" || h2.Mem != 192 {
		t.Errorf("h2 = %+v", h2)
	}
	// The group's exec, then the node's, in order.
	if strings.Count(h2.Boot, "/bin/sh -c") != 3 || !strings.Contains(h2.Boot, "/bin/sh -c 'ip link set eth1 up'\n/bin/sh -c 'ip addr add 192.168.3.10/24 dev eth1'\n/bin/sh -c 'ip route add") {
		t.Errorf("h2 boot:\n%s", h2.Boot)
	}
	if top := lab.Topology("cnt"); top.VMs[0].Type != "cnt" || top.Tux[0].Name != NatTux || top.VMs[0].Eths[0].Lans[0] != NatLan {
		t.Errorf("topology %+v", top)
	}
	roundTrip(t, lab, map[string][]string{
		"r1": {"etc/frr/frr.conf", "etc/frr/daemons", BootScript},
		"h2": {"etc/motd", BootScript},
	})
}

func TestClabMerge(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a", "A")
	write(t, dir, "b", "B")
	write(t, dir, "tree/x", "X")
	write(t, dir, "lab.clab.yml", `name: m
topology:
  defaults:
    kind: linux
    env: {A: d, B: d}
    binds: [a:/etc/one, a:/etc/two]
    exec: [echo defaults]
  kinds:
    linux:
      image: acme/x
      env: {B: k, C: k}
      sysctls: {net.ipv4.ip_forward: 1}
  groups:
    g:
      binds: [b:/etc/two, tree:/opt/t]
      ports: ["8080:80"]
  nodes:
    n1:
      group: g
      env: {C: n}
    n2: {}
    br: {kind: bridge}
  links:
    - endpoints: [n1:eth1, br:eth1]
    - endpoints: [n2:eth2, br:eth2]
`)
	lab, err := Read(dir, Options{Images: map[string]string{"acme/x": "busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := lab.Node("n1"), lab.Node("n2")
	if n1.Rootfs != "busybox" || n1.Eths[1] != "br" || n2.Eths[2] != "br" || lab.Node("br") != nil {
		t.Errorf("n1 %+v n2 %+v", n1, n2)
	}
	for _, s := range []string{"export 'C=n'", "export 'B=k'", "export 'A=d'", "sysctl -qw 'net.ipv4.ip_forward=1'", "/bin/sh -c 'echo defaults'"} {
		if !strings.Contains(n1.Boot, s) {
			t.Errorf("n1 boot lacks %s:\n%s", s, n1.Boot)
		}
	}
	got := map[string]string{}
	for _, f := range n1.Files {
		got[f.Guest] = f.Src[len(dir)+1:]
	}
	if !reflect.DeepEqual(got, map[string]string{"/etc/one": "a", "/etc/two": "b", "/opt/t": "tree"}) {
		t.Errorf("n1 binds %v", got)
	}
	if len(n1.Ports) != 1 || n1.Ports[0] != (Port{"tcp", 8080, 80}) || len(n2.Ports) != 0 {
		t.Errorf("ports %v %v", n1.Ports, n2.Ports)
	}
	roundTrip(t, lab, map[string][]string{"n1": {"etc/one", "etc/two", "opt/t/x", BootScript}})
}

func TestClabErrors(t *testing.T) {
	head := "name: e\ntopology:\n  nodes:\n    r1: {kind: frr}\n    r2: {kind: linux}\n"
	for _, c := range []struct{ name, yml, want string }{
		{"unknown node", head + "  links:\n    - endpoints: [\"r1:eth1\", \"r9:eth1\"]\n", `e.clab.yml:7:30: endpoint r9:eth1 names node "r9"`},
		{"bad eth", head + "  links:\n    - endpoints: [r1:e1-1, r2:eth1]\n", "e.clab.yml:7:19: endpoint r1:e1-1: cloonix nodes have interfaces eth1.."},
		{"eth0", head + "  links:\n    - endpoints: [r1:eth0, r2:eth1]\n", "e.clab.yml:7:19: endpoint r1:eth0: eth0 is containerlab's management interface"},
		{"eth twice", head + "  links:\n    - endpoints: [r1:eth1, r2:eth1]\n    - endpoints: [r1:eth1, r2:eth2]\n", "e.clab.yml:8:19: endpoint r1:eth1 is already on another link"},
		{"no colon", head + "  links:\n    - endpoints: [r1, r2:eth1]\n", `e.clab.yml:7:19: endpoint "r1": write NODE:INTERFACE`},
		{"startup missing", "name: e\ntopology:\n  nodes:\n    r1:\n      kind: frr\n      startup-config: nothere.conf\n", "e.clab.yml:6:23: node r1: startup-config"},
		{"bind missing", "name: e\ntopology:\n  nodes:\n    r1:\n      kind: linux\n      binds: [nothere:/x]\n", "e.clab.yml:6:15: node r1: bind"},
		{"bad bind", "name: e\ntopology:\n  nodes:\n    r1:\n      kind: linux\n      binds: [x]\n", `e.clab.yml:6:15: node r1: bind "x": write HOST_PATH:/NODE_PATH`},
		{"kind", "name: e\ntopology:\n  nodes:\n    r1:\n      kind: nokia_srlinux\n      image: ghcr.io/nokia/srlinux\n", `e.clab.yml:4:5: node r1: kind "nokia_srlinux" is not supported`},
		{"no kind", "name: e\ntopology:\n  nodes:\n    r1: {image: x}\n", "e.clab.yml:4:5: node r1 has no kind"},
		{"group", "name: e\ntopology:\n  nodes:\n    r1: {kind: linux, group: nope}\n", `e.clab.yml:4:5: node r1: group "nope" is not under topology.groups`},
		{"link type", head + "  links:\n    - type: vxlan\n      endpoints: [r1:eth1, r2:eth1]\n", `e.clab.yml:7:13: link type "vxlan" is not supported`},
		{"unknown key", "name: e\ntopology:\n  nodes:\n    r1: {kind: linux, colour: red}\n", `e.clab.yml:4:23: node r1: unknown key "colour"`},
		{"yaml", "name: e\ntopology: [\n", "e.clab.yml: yaml: line 2"},
		{"daemon", "name: e\ntopology:\n  nodes:\n    r1: {kind: frr, extras: {frr: {daemons: [ospfd, nod]}}}\n", `e.clab.yml:4:53: node r1: extras.frr.daemons: "nod" is not an FRR daemon`},
		{"no topology", "name: e\n", "e.clab.yml: no topology: section"},
		{"memory", "name: e\ntopology:\n  nodes:\n    r1: {kind: linux, memory: lots}\n", "e.clab.yml:4:31: node r1: memory"},
		{"wait-for", "name: e\ntopology:\n  nodes:\n    r1: {kind: linux, wait-for: [r9]}\n", `e.clab.yml:4:34: node r1: wait-for "r9": no such node`},
		{"wait cycle", "name: e\ntopology:\n  nodes:\n    a: {kind: linux, wait-for: [b]}\n    b: {kind: linux, wait-for: [a]}\n", "e.clab.yml: wait-for: boot dependencies form a cycle: a -> b -> a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "e.clab.yml", c.yml)
			_, err := Read(dir+"/e.clab.yml", Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %q", err, c.want)
			}
		})
	}
	_, err := Read("../../demos/clab_ring", Options{As: "xen"})
	if err == nil || !strings.Contains(err.Error(), `--as "xen": use cnt, uml or kvm`) {
		t.Errorf("--as xen: %v", err)
	}
}

func FuzzClab(f *testing.F) {
	b, _ := os.ReadFile("../../demos/clab_ring/ring.clab.yml")
	f.Add(string(b))
	f.Add("name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: bridge}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n")
	f.Fuzz(func(t *testing.T, s string) {
		lab, err := parseClab("/nonexistent/x.clab.yml", []byte(s), Options{})
		if err != nil {
			return
		}
		top := lab.Topology("uml")
		if _, err := topology.Parse("t", top.Bytes()); err != nil {
			t.Fatalf("the converted topology does not parse: %v\n%s", err, top.Bytes())
		}
	})
}
