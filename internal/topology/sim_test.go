package topology

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"cloonix/internal/proto"
)

// sim is a switch in memory with the daemon's rules for lans (a lan not
// added explicitly vanishes with its last port; attaching twice, or
// detaching what is not attached, is an error), so plans can be applied
// and checked without guests.
type sim struct {
	vms      map[string]*proto.VM
	tux      map[string]*proto.Tux
	raw      map[string]bool
	portLans map[string]map[string]bool
	lans     map[string]bool // lan -> explicit
	impair   map[string]string
	pos      map[string][2]int
}

func newSim() *sim {
	return &sim{vms: map[string]*proto.VM{}, tux: map[string]*proto.Tux{}, raw: map[string]bool{},
		portLans: map[string]map[string]bool{}, lans: map[string]bool{}, impair: map[string]string{}, pos: map[string][2]int{}}
}

func (s *sim) addPort(p string) { s.portLans[p] = map[string]bool{} }

func (s *sim) delPort(p string) {
	for l := range s.portLans[p] {
		s.detach(p, l)
	}
	delete(s.portLans, p)
	delete(s.impair, p)
}

func (s *sim) members(l string) []string {
	var out []string
	for p, ls := range s.portLans {
		if ls[l] {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func (s *sim) detach(p, l string) error {
	if !s.portLans[p][l] {
		return fmt.Errorf("port %q is not on lan %q", p, l)
	}
	delete(s.portLans[p], l)
	if len(s.members(l)) == 0 && !s.lans[l] {
		delete(s.lans, l)
	}
	return nil
}

func (s *sim) Do(r proto.Request, _ any) error {
	_, err := s.Call(reqAttrs(r))
	return err
}

func (s *sim) Call(verb string, a map[string]string) ([]byte, error) {
	name := a["name"]
	switch verb {
	case "add_lan":
		if explicit, ok := s.lans[name]; ok && explicit {
			return nil, fmt.Errorf("lan %q already exists", name)
		}
		s.lans[name] = true
	case "del_lan":
		if _, ok := s.lans[name]; !ok {
			return nil, fmt.Errorf("lan %q: no such lan", name)
		}
		for _, p := range s.members(name) {
			delete(s.portLans[p], name)
		}
		delete(s.lans, name)
	case "add_vm":
		return nil, s.addVM(name, a)
	case "del_vm":
		v := s.vms[name]
		if v == nil {
			return nil, fmt.Errorf("vm %q: no such vm", name)
		}
		for _, e := range v.Eths {
			s.delPort(e.Port)
		}
		delete(s.vms, name)
		delete(s.pos, "vm:"+name)
	case "add_tux":
		return nil, s.addTux(name, a)
	case "del_tux":
		if s.tux[name] == nil {
			return nil, fmt.Errorf("tux %q: no such tux", name)
		}
		s.delPort(name)
		delete(s.tux, name)
	case "attach":
		p, l := a["port"], a["lan"]
		if _, ok := s.portLans[p]; !ok {
			return nil, fmt.Errorf("port %q: no such port", p)
		}
		if s.portLans[p][l] {
			return nil, fmt.Errorf("port %q is already on lan %q", p, l)
		}
		s.portLans[p][l] = true
		if _, ok := s.lans[l]; !ok {
			s.lans[l] = false
		}
	case "detach":
		p, l := a["port"], a["lan"]
		if _, ok := s.lans[l]; !ok {
			return nil, fmt.Errorf("lan %q: not found", l)
		}
		return nil, s.detach(p, l)
	case "impair":
		p := a["port"]
		if _, ok := s.portLans[p]; !ok {
			return nil, fmt.Errorf("port %q: no such port", p)
		}
		if a["clear"] == "true" {
			delete(s.impair, p)
		} else {
			s.impair[p] = a["spec"]
		}
	case "forward_add", "forward_del":
		return nil, s.forward(verb == "forward_add", name, a)
	case "set_pos":
		key := a["kind"] + ":" + name
		ok := false
		switch a["kind"] {
		case "vm":
			ok = s.vms[name] != nil
		case "tux":
			ok = s.tux[name] != nil
		case "lan":
			_, ok = s.lans[name]
		}
		if !ok {
			return nil, fmt.Errorf("set_pos: no such %s %s", a["kind"], name)
		}
		x, _ := strconv.Atoi(a["x"])
		y, _ := strconv.Atoi(a["y"])
		s.pos[key] = [2]int{x, y}
	default:
		return nil, fmt.Errorf("unknown request <%s>", verb)
	}
	return nil, nil
}

// addVM adds a VM as the switch would, with its defaults.
func (s *sim) addVM(name string, a map[string]string) error {
	if s.vms[name] != nil {
		return fmt.Errorf("vm %q already exists", name)
	}
	mem, _ := strconv.Atoi(a["mem"])
	cpu, _ := strconv.Atoi(a["cpu"])
	n, _ := strconv.Atoi(a["eth"])
	typ := a["type"]
	if typ == "" {
		typ = "kvm"
	}
	if mem == 0 {
		mem = 256
	}
	if cpu == 0 {
		cpu = 1
	}
	tr := a["transport"]
	if typ == "uml" && tr == "" {
		tr = "bess"
	}
	v := &proto.VM{Name: name, Type: typ, State: "running", Mem: mem, CPU: cpu, Rootfs: a["rootfs"], Kernel: a["kernel"], Transport: tr}
	for i := 0; i < n; i++ {
		p := EthPort(name, i)
		if _, ok := s.portLans[p]; ok {
			return fmt.Errorf("port %s exists", p)
		}
		v.Eths = append(v.Eths, proto.Eth{Port: p})
	}
	for _, e := range v.Eths {
		s.addPort(e.Port)
	}
	s.vms[name] = v
	return nil
}

// addTux adds a tux with its options, and a derived one the switch shows.
func (s *sim) addTux(name string, a map[string]string) error {
	if s.tux[name] != nil {
		return fmt.Errorf("tux %q already exists", name)
	}
	if _, ok := s.portLans[name]; ok {
		return fmt.Errorf("port %q already exists", name)
	}
	x := &proto.Tux{Name: name, Kind: a["kind"], State: "running"}
	for k, v := range a {
		if k != "name" && k != "kind" {
			x.Options = append(x.Options, proto.Option{Name: k, Value: v})
		}
	}
	// The switch shows derived values too; they must not count.
	x.Options = append(x.Options, proto.Option{Name: "link", Value: "up"})
	sort.Slice(x.Options, func(i, j int) bool { return x.Options[i].Name < x.Options[j].Name })
	s.tux[name] = x
	s.addPort(name)
	return nil
}

// forward adds (add) or deletes a port forward of tux name.
func (s *sim) forward(add bool, name string, a map[string]string) error {
	x := s.tux[name]
	if x == nil {
		return fmt.Errorf("tux %q: no such tux", name)
	}
	f := proto.Forward{Proto: a["proto"], Host: a["host"], Guest: a["guest"]}
	i := -1
	for j, g := range x.Forwards {
		if g == f {
			i = j
		}
	}
	if add {
		if i >= 0 {
			return fmt.Errorf("forward exists")
		}
		x.Forwards = append(x.Forwards, f)
	} else {
		if i < 0 {
			return fmt.Errorf("no such forward")
		}
		x.Forwards = append(x.Forwards[:i], x.Forwards[i+1:]...)
	}
	return nil
}

func (s *sim) at(key string) (*int, *int) {
	p, ok := s.pos[key]
	if !ok {
		return nil, nil
	}
	x, y := p[0], p[1]
	return &x, &y
}

// Lab is what list would return.
func (s *sim) Lab() *proto.Lab {
	lab := &proto.Lab{}
	lans := func(p string) []string {
		var out []string
		for l := range s.portLans[p] {
			out = append(out, l)
		}
		sort.Strings(out)
		return out
	}
	for _, n := range sortedKeys(keys(s.vms)) {
		v := *s.vms[n]
		v.Eths = append([]proto.Eth(nil), v.Eths...)
		for i := range v.Eths {
			v.Eths[i].Lans = lans(v.Eths[i].Port)
			v.Eths[i].Impair = s.impair[v.Eths[i].Port]
		}
		v.X, v.Y = s.at("vm:" + n)
		lab.VMs = append(lab.VMs, v)
	}
	for _, n := range sortedKeys(keys(s.tux)) {
		x := *s.tux[n]
		x.Lans = lans(n)
		x.Impair = s.impair[n]
		x.X, x.Y = s.at("tux:" + n)
		lab.Tux = append(lab.Tux, x)
	}
	for p := range s.portLans {
		lab.Ports = append(lab.Ports, proto.Port{Name: p, Lans: lans(p)})
	}
	sort.Slice(lab.Ports, func(i, j int) bool { return lab.Ports[i].Name < lab.Ports[j].Name })
	for _, l := range sortedKeys(func() map[string]bool {
		m := map[string]bool{}
		for l := range s.lans {
			m[l] = true
		}
		return m
	}()) {
		x, y := s.at("lan:" + l)
		lab.Lans = append(lab.Lans, proto.Lan{Name: l, Ports: s.members(l), X: x, Y: y})
	}
	lab.Normalize()
	return lab
}

func keys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// startLab is a running lab with a bit of everything: VMs on shared
// lans, an explicit empty lan, tux with options and forwards, the default
// nat, a raw port, impairments and positions.
func startLab(t testing.TB) *sim {
	s := newSim()
	must := func(verb string, kv ...string) {
		a := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			a[kv[i]] = kv[i+1]
		}
		if _, err := s.Call(verb, a); err != nil {
			t.Fatalf("%s %v: %v", verb, kv, err)
		}
	}
	must("add_vm", "name", "A", "type", "uml", "mem", "64", "rootfs", "busybox", "eth", "2")
	must("add_vm", "name", "B", "type", "uml", "mem", "64", "rootfs", "busybox", "eth", "1")
	must("add_vm", "name", "C", "type", "kvm", "mem", "128", "cpu", "2", "rootfs", "debian-frr", "eth", "3")
	must("attach", "port", "A:eth0", "lan", "lan_one")
	must("attach", "port", "A:eth1", "lan", "lan_two")
	must("attach", "port", "B:eth0", "lan", "lan_one")
	must("attach", "port", "B:eth0", "lan", "lan_two")
	must("attach", "port", "C:eth2", "lan", "lan_two")
	must("add_lan", "name", "old")
	must("add_tux", "name", "nat", "kind", "slirp", "subnet", "10.0.2.0/24")
	must("add_tux", "name", "t", "kind", "tap", "ifname", "tap0")
	must("attach", "port", "t", "lan", "lan_one")
	must("forward_add", "name", "nat", "proto", "tcp", "host", "127.0.0.1:2222", "guest", "10.0.2.15:22")
	s.raw["p1"] = true
	s.addPort("p1")
	must("attach", "port", "p1", "lan", "lan_raw")
	must("attach", "port", "C:eth0", "lan", "lan_raw")
	must("impair", "port", "A:eth0", "spec", "delay=5ms")
	must("set_pos", "kind", "vm", "name", "A", "x", "1", "y", "2")
	must("set_pos", "kind", "lan", "name", "old", "x", "3", "y", "4")
	return s
}

// checkApply applies the plan for file to a copy of the start lab and
// checks that nothing fails and that the lab then matches the file.
func checkApply(t testing.TB, top *Topology, o Options) {
	s := startLab(t)
	p := DiffWith(s.Lab(), top, o)
	if err := p.Apply(s, "/demo", nil); err != nil {
		t.Fatalf("apply failed: %v\nplan:\n%s\nfile:\n%s", err, p, top.Bytes())
	}
	if again := DiffWith(s.Lab(), top, o); !again.Empty() {
		t.Fatalf("after applying\n%s\nthe lab still differs:\n%s\nfile:\n%s", p, again, top.Bytes())
	}
	// What the plan may not touch: the raw port keeps its lan; without
	// --add, the VMs and tux are exactly the file's (plus the unnamed nat).
	lab := s.Lab()
	if !contains(lab.Ports[indexPort(lab, "p1")].Lans, "lan_raw") {
		t.Fatalf("the raw port lost its lan:\n%s", p)
	}
	if !o.Add {
		for _, v := range lab.VMs {
			if top.VM(v.Name) == nil {
				t.Fatalf("VM %s stayed though the file does not name it", v.Name)
			}
		}
	}
	// And the saved lab describes the same lab.
	saved, err := Parse("saved", FromLab(lab).Bytes())
	if err != nil {
		t.Fatalf("saved lab does not parse: %v\n%s", err, FromLab(lab).Bytes())
	}
	if d := Diff(lab, saved); !d.Empty() {
		t.Fatalf("the saved lab differs from the lab:\n%s", d)
	}
}

func indexPort(lab *proto.Lab, name string) int {
	for i, p := range lab.Ports {
		if p.Name == name {
			return i
		}
	}
	return -1
}

var applyCases = []string{
	"",
	abc,
	`<VM><name>A</name><type>uml</type><mem>64</mem><rootfs>busybox</rootfs><eth><vlan>lan_two</vlan></eth><eth/></VM>
<TUX><name>t</name><type>tap</type><ifname>tap1</ifname><vlan>lan_two</vlan><x>5</x><y>5</y></TUX>
<LAN><name>old</name></LAN><LAN><name>fresh</name><x>1</x><y>1</y></LAN>`,
	`<VM><name>C</name><type>kvm</type><mem>128</mem><cpu>2</cpu><rootfs>debian-frr</rootfs><eth><vlan>lan_raw</vlan></eth><eth/><eth><vlan>x</vlan><impair>loss=1%</impair></eth></VM>
<TUX><name>nat</name><type>slirp</type><vlan>lan_one</vlan><forward>udp 127.0.0.1:53 10.0.2.3:53</forward></TUX>`,
	`<VM><name>B</name><type>kvm</type><eth><vlan>lan_one</vlan><vlan>lan_two</vlan></eth></VM>
<TUX><name>nat</name><type>tap</type></TUX>`,
}

func TestApplySim(t *testing.T) {
	for i, f := range applyCases {
		for _, add := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/add=%v", i, add), func(t *testing.T) {
				checkApply(t, mustParse(t, f), Options{Add: add})
			})
		}
	}
}

// FuzzApply: any file that parses gives a plan that applies without an
// error to a running lab and leaves it matching the file.
func FuzzApply(f *testing.F) {
	for _, c := range applyCases {
		f.Add([]byte("<TOPOLOGY>"+c+"</TOPOLOGY>"), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, add bool) {
		top, err := Parse("f", data)
		if err != nil {
			return
		}
		// The sim, like the switch, refuses a tux named like a port.
		for _, x := range top.Tux {
			if strings.Contains(x.Name, ":") || x.Name == "p1" {
				return
			}
		}
		checkApply(t, top, Options{Add: add})
	})
}
