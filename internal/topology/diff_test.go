package topology

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/proto"
)

// lab builds a running lab from a compact description: VMs with their
// eths' lans, tux, raw ports. Lans and ports are derived as list does.
type vmDesc struct {
	name, typ string
	mem       int
	eths      [][]string
}

func mkLab(vms []vmDesc, tux []proto.Tux, raw map[string][]string, explicit ...string) *proto.Lab {
	lab := &proto.Lab{}
	members := map[string][]string{}
	for _, v := range vms {
		pv := proto.VM{Name: v.name, Type: v.typ, Mem: v.mem, CPU: 1, Rootfs: "busybox", State: "running"}
		for i, ls := range v.eths {
			port := EthPort(v.name, i)
			pv.Eths = append(pv.Eths, proto.Eth{Port: port, Lans: ls})
			lab.Ports = append(lab.Ports, proto.Port{Name: port, Lans: ls})
			for _, l := range ls {
				members[l] = append(members[l], port)
			}
		}
		lab.VMs = append(lab.VMs, pv)
	}
	for _, x := range tux {
		lab.Tux = append(lab.Tux, x)
		lab.Ports = append(lab.Ports, proto.Port{Name: x.Name, Kind: "tux", Lans: x.Lans})
		for _, l := range x.Lans {
			members[l] = append(members[l], x.Name)
		}
	}
	for p, ls := range raw {
		lab.Ports = append(lab.Ports, proto.Port{Name: p, Kind: "stream", Lans: ls})
		for _, l := range ls {
			members[l] = append(members[l], p)
		}
	}
	for _, l := range explicit {
		if _, ok := members[l]; !ok {
			members[l] = nil
		}
	}
	for _, l := range sortedKeys(func() map[string]bool {
		m := map[string]bool{}
		for k := range members {
			m[k] = true
		}
		return m
	}()) {
		lab.Lans = append(lab.Lans, proto.Lan{Name: l, Ports: members[l]})
	}
	lab.Normalize()
	return lab
}

func mustParse(t *testing.T, s string) *Topology {
	t.Helper()
	top, err := Parse("t", []byte("<TOPOLOGY>"+s+"</TOPOLOGY>"))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

const abc = `
<VM><name>A</name><type>uml</type><mem>64</mem><eth><vlan>lan_one</vlan></eth></VM>
<VM><name>B</name><type>uml</type><mem>64</mem><eth><vlan>lan_one</vlan><vlan>lan_two</vlan></eth></VM>
<VM><name>C</name><type>uml</type><mem>64</mem><eth><vlan>lan_two</vlan></eth></VM>`

func runningABC() []vmDesc {
	return []vmDesc{
		{"A", "uml", 64, [][]string{{"lan_one"}}},
		{"B", "uml", 64, [][]string{{"lan_one", "lan_two"}}},
		{"C", "uml", 64, [][]string{{"lan_two"}}},
	}
}

var nat = proto.Tux{Name: "nat", Kind: "slirp"}

func TestDiff(t *testing.T) {
	tests := []struct {
		name string
		cur  *proto.Lab
		file string
		want string // the plan, one step per line
		keep []string
	}{
		{"empty to abc", mkLab(nil, []proto.Tux{nat}, nil), abc, `
add vm A (uml, 64 MB, 1 eth)
attach A:eth0 lan_one
add vm B (uml, 64 MB, 1 eth)
attach B:eth0 lan_one
attach B:eth0 lan_two
add vm C (uml, 64 MB, 1 eth)
attach C:eth0 lan_two`, []string{"tux nat (the switch's default slirp; name it in the file to manage it)"}},
		{"same", mkLab(runningABC(), nil, nil), abc, "", nil},
		{"lan change is live", mkLab(runningABC(), nil, nil), strings.Replace(abc, "<name>A</name><type>uml</type><mem>64</mem><eth><vlan>lan_one</vlan>", "<name>A</name><type>uml</type><mem>64</mem><eth><vlan>lan_two</vlan>", 1), `
detach A:eth0 lan_one
attach A:eth0 lan_two`, nil},
		{"removed vm, its lan goes", mkLab(append(runningABC(), vmDesc{"D", "uml", 64, [][]string{{"lan_d"}, {"lan_one"}}}), nil, nil), abc, `
del lan lan_d
del vm D`, nil},
		{"mem change replaces", mkLab(runningABC(), nil, nil), strings.Replace(abc, "<name>C</name><type>uml</type><mem>64</mem>", "<name>C</name><type>uml</type><mem>128</mem>", 1), `
del vm C [to replace it: mem 64 -> 128]
add vm C (uml, 128 MB, 1 eth) [replaces the running one: mem 64 -> 128]
attach C:eth0 lan_two`, nil},
		{"eth count and type", mkLab(runningABC(), nil, nil), strings.Replace(abc, "<name>C</name><type>uml</type><mem>64</mem><eth><vlan>lan_two</vlan></eth>", "<name>C</name><type>KVM</type><mem>64</mem><eth><vlan>lan_two</vlan></eth><eth/>", 1), `
del vm C [to replace it: type uml -> kvm, eths 1 -> 2]
add vm C (kvm, 64 MB, 2 eth) [replaces the running one: type uml -> kvm, eths 1 -> 2]
attach C:eth0 lan_two`, nil},
		{"crashed vm is booted again", func() *proto.Lab { l := mkLab(runningABC(), nil, nil); l.VMs[2].State = "crashed"; return l }(), abc, `
del vm C [to replace it: it is crashed]
add vm C (uml, 64 MB, 1 eth) [replaces the running one: it is crashed]
attach C:eth0 lan_two`, nil},
		{"unset values take what runs", mkLab(runningABC(), nil, nil), `
<VM><name>A</name><eth><vlan>lan_one</vlan></eth></VM>
<VM><name>B</name><eth><vlan>lan_one</vlan><vlan>lan_two</vlan></eth></VM>
<VM><name>C</name><eth><vlan>lan_two</vlan></eth></VM>`, "", nil},
		{"raw port keeps its lan", mkLab(runningABC(), nil, map[string][]string{"p1": {"lan_x"}}), abc, "", []string{"port p1 (a raw port; topology files do not describe raw ports)"}},
		{"explicit lan", mkLab(runningABC(), nil, nil, "old"), abc + "<LAN><name>lone</name></LAN>", `
add lan lone
del lan old`, nil},
		{"explicit lan exists", mkLab(runningABC(), nil, nil, "lone"), abc + "<LAN><name>lone</name></LAN>", "", nil},
		{"tux", mkLab(runningABC(), []proto.Tux{nat, {Name: "t1", Kind: "tap", Lans: []string{"lan_one"}}, {Name: "gone", Kind: "tap"}}, nil), abc + `
<TUX><name>nat</name><type>slirp</type><vlan>lan_two</vlan><forward>tcp 127.0.0.1:2222 10.0.2.15:22</forward></TUX>
<TUX><name>t1</name><type>tap</type><vlan>lan_two</vlan></TUX>
<TUX><name>t2</name><type>t2t</type><peer>h:1</peer><vlan>lan_one</vlan></TUX>`, `
add tux t2t t2 peer=h:1
attach t2 lan_one
detach t1 lan_one
del tux gone
attach nat lan_two
add forward nat tcp 127.0.0.1:2222 10.0.2.15:22
attach t1 lan_two`, nil},
		{"tux option change replaces", mkLab(nil, []proto.Tux{{Name: "t1", Kind: "tap", Lans: []string{"l"}, Options: []proto.Option{{Name: "ifname", Value: "tap7"}}}}, nil),
			`<TUX><name>t1</name><type>tap</type><ifname>tap8</ifname><vlan>l</vlan></TUX>`, `
del tux t1 [to replace it: ifname tap7 -> tap8]
add tux tap t1 ifname=tap8 [replaces the running one: ifname tap7 -> tap8]
attach t1 l`, nil},
		{"tux default options ignored", mkLab(nil, []proto.Tux{{Name: "t1", Kind: "tap", Lans: []string{"l"}, Options: []proto.Option{{Name: "ifname", Value: "tap7"}}}}, nil),
			`<TUX><name>t1</name><type>tap</type><vlan>l</vlan></TUX>`, "", nil},
		{"nat named elsewhere is deleted", mkLab(nil, []proto.Tux{{Name: "nat", Kind: "tap"}}, nil), ``, "\ndel tux nat", nil},
		{"impairments", mkLab(runningABC(), []proto.Tux{{Name: "t", Kind: "tap", Impair: "loss=1%"}}, nil),
			strings.Replace(abc, "<vlan>lan_two</vlan></eth></VM>", "<vlan>lan_two</vlan><impair>delay=5ms</impair></eth></VM>", 1) + `<TUX><name>t</name><type>tap</type></TUX>`, `
impair B:eth0 delay=5ms
impair t clear`, nil},
	}
	placed := mkLab(runningABC(), nil, nil, "lone")
	placed.VMs[0].X, placed.VMs[0].Y = ip(1), ip(2)
	tests = append(tests, struct {
		name string
		cur  *proto.Lab
		file string
		want string
		keep []string
	}{"positions", placed, strings.Replace(strings.Replace(abc, "<name>A</name>", "<name>A</name><x>1</x><y>2</y>", 1), "<name>B</name>", "<name>B</name><x>3</x><y>4</y>", 1) +
		"<LAN><name>lone</name><x>-5</x><y>6</y></LAN>", "\nplace vm B at 3,4\nplace lan lone at -5,6", nil})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Diff(tc.cur, mustParse(t, tc.file))
			got := strings.TrimSpace(p.String())
			want := strings.TrimSpace(tc.want)
			if want == "" {
				want = "nothing to change: the running lab matches the file"
			}
			if got != want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, want)
			}
			if !reflect.DeepEqual(p.Keep, tc.keep) {
				t.Errorf("keep = %q, want %q", p.Keep, tc.keep)
			}
		})
	}
}

func TestDiffAdd(t *testing.T) {
	cur := mkLab(append(runningABC(), vmDesc{"D", "uml", 64, [][]string{{"lan_d"}, {"lan_one"}}}), []proto.Tux{{Name: "t", Kind: "tap", Lans: []string{"lan_d"}}}, nil, "old")
	// The file names A (moved to lan_two) and a new E; D, t, old stay.
	p := DiffWith(cur, mustParse(t, `<VM><name>A</name><type>uml</type><mem>64</mem><eth><vlan>lan_two</vlan></eth></VM>
<VM><name>E</name><eth><vlan>lan_d</vlan></eth></VM>`), Options{Add: true})
	want := "add vm E (1 eth)\nattach E:eth0 lan_d\ndetach A:eth0 lan_one\nattach A:eth0 lan_two"
	if got := strings.TrimSpace(p.String()); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	keep := strings.Join(p.Keep, "\n")
	for _, k := range []string{"vm B", "vm C", "vm D", "tux t"} {
		if !strings.Contains(keep, k) {
			t.Errorf("keep lacks %s: %q", k, p.Keep)
		}
	}
}

// TestDiffFromLab: a running lab saved and diffed against itself needs no
// change.
func TestDiffFromLab(t *testing.T) {
	slirp := proto.Tux{Name: "nat", Kind: "slirp", Options: []proto.Option{{Name: "subnet", Value: "10.0.2.0/24"}, {Name: "gateway", Value: "10.0.2.2"}, {Name: "link", Value: "up"}}}
	cur := mkLab(runningABC(), []proto.Tux{slirp, {Name: "t", Kind: "t2t", Lans: []string{"lan_one"}, Options: []proto.Option{{Name: "peer", Value: "h:1"}}}}, nil, "alone")
	top := FromLab(cur)
	again, err := Parse("saved", top.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, top.Bytes())
	}
	if p := Diff(cur, again); !p.Empty() {
		t.Errorf("saved lab differs from itself:\n%s\n%s", p, top.Bytes())
	}
	if b := string(top.Bytes()); !strings.Contains(b, "<subnet> 10.0.2.0/24 </subnet>") || strings.Contains(b, "gateway") || strings.Contains(b, "link") {
		t.Errorf("saved tux options: only what add_tux takes:\n%s", b)
	}
	if len(again.Lans) != 1 || again.Lans[0].Name != "alone" {
		t.Errorf("the empty lan is not kept: %+v", again.Lans)
	}
}

// fake records requests and fails the ones named in fail.
type fake struct {
	calls []string
	fail  map[string]bool
}

// reqAttrs is a request as the switch sees it: verb and attributes.
func reqAttrs(r proto.Request) (string, map[string]string) {
	a, _, err := proto.EncodeRequest(r)
	if err != nil {
		panic(err)
	}
	return r.Verb(), a
}

func (f *fake) Do(r proto.Request, _ any) error {
	_, err := f.Call(reqAttrs(r))
	return err
}

func (f *fake) Call(verb string, a map[string]string) ([]byte, error) {
	s := verb + " " + a["name"] + a["port"]
	f.calls = append(f.calls, strings.TrimSpace(s))
	if f.fail[strings.TrimSpace(s)] {
		return nil, errors.New("refused")
	}
	return nil, nil
}

func TestApplyUndo(t *testing.T) {
	cur := mkLab([]vmDesc{{"OLD", "uml", 64, [][]string{{"x"}}}}, nil, nil)
	top := mustParse(t, abc)
	p := Diff(cur, top)

	// add_vm C fails: A and B were added, nothing was removed yet, so
	// both are deleted again and OLD still runs.
	f := &fake{fail: map[string]bool{"add_vm C": true}}
	err := p.Apply(f, "/demo", nil)
	var ae *ApplyError
	if !errors.As(err, &ae) || !ae.Undone {
		t.Fatalf("want an undone ApplyError, got %v", err)
	}
	if !strings.Contains(err.Error(), "add vm C") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("error: %v", err)
	}
	want := []string{"add_vm A", "attach A:eth0", "add_vm B", "attach B:eth0", "attach B:eth0", "add_vm C", "del_vm B", "del_vm A"}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("calls %q\nwant  %q", f.calls, want)
	}

	// A failure after a removal cannot be undone; the error says so.
	f = &fake{fail: map[string]bool{"del_vm OLD": true}}
	err = p.Apply(f, "", nil)
	if !errors.As(err, &ae) || ae.Undone {
		t.Fatalf("want a not-undone error, got %v", err)
	}
	if len(f.calls) != 9 || f.calls[8] != "del_vm OLD" {
		t.Errorf("calls: %q", f.calls)
	}
	// (del lan x came first and succeeded, so the lab has changed.)
	if !strings.Contains(err.Error(), "stay applied") {
		t.Errorf("error: %v", err)
	}

	// All good.
	f = &fake{}
	var seen []string
	if err := p.Apply(f, "/demo", func(s Step) { seen = append(seen, s.String()) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(p.Steps) {
		t.Errorf("progress saw %d steps of %d", len(seen), len(p.Steps))
	}
}

func TestRequest(t *testing.T) {
	top := mustParse(t, `<VM><name>A</name><type>UML</type><mem>64</mem><cpu>1</cpu><rootfs>busybox</rootfs><transport>daemon</transport><eth/><eth/></VM>
<TUX><name>v</name><type>vxlan</type><vni>7</vni><remote>1.2.3.4</remote></TUX>`)
	verb, a := reqAttrs(Step{Op: AddVM, VM: &top.VMs[0]}.Request("/d"))
	if want := map[string]string{"name": "A", "type": "uml", "mem": "64", "cpu": "1", "rootfs": "busybox", "transport": "daemon", "eth": "2", "demo": "/d"}; verb != "add_vm" || !reflect.DeepEqual(a, want) {
		t.Errorf("%s %v", verb, a)
	}
	verb, a = reqAttrs(Step{Op: AddTux, Tux: &top.Tux[0]}.Request(""))
	if want := map[string]string{"name": "v", "kind": "vxlan", "vni": "7", "remote": "1.2.3.4"}; verb != "add_tux" || !reflect.DeepEqual(a, want) {
		t.Errorf("%s %v", verb, a)
	}
	verb, a = reqAttrs(Step{Op: Impair, Port: "A:eth0"}.Request(""))
	if verb != "impair" || a["clear"] != "true" || a["port"] != "A:eth0" {
		t.Errorf("%s %v", verb, a)
	}
}
