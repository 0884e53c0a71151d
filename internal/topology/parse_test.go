package topology

import (
	"reflect"
	"strings"
	"testing"
)

// seedSample is the seed's "Topology Files" sample, verbatim (its "..."
// stands for more VMs).
const seedSample = `<TOPOLOGY> <config_path> . </config_path> <VM> <name> ROUTER1 </name> <type> KVM </type> <mem> 128 </mem> <rootfs> openwrt_kvm </rootfs> <eth> <vlan > lan_two </vlan> </eth> <eth> <vlan > lan_three </vlan> </eth> <eth> <vlan > lan_one </vlan> </eth> </VM> ... </TOPOLOGY>`

// designSample is DESIGN section 4's example with the extensions.
const designSample = `<TOPOLOGY>
  <config_path> . </config_path>
  <VM> <name> ROUTER1 </name> <type> KVM </type> <mem> 128 </mem> <rootfs> busybox </rootfs>
       <eth> <vlan> lan_two </vlan> </eth> <eth> <vlan> lan_one </vlan> <vlan> lan_x </vlan> </eth>
  </VM>
  <TUX> <name> nat </name> <type> slirp </type> <vlan> lan_one </vlan> </TUX>
</TOPOLOGY>`

func ip(i int) *int { return &i }

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Topology
	}{
		{"seed sample", seedSample, &Topology{ConfigPath: ".", VMs: []VM{{
			Name: "ROUTER1", Type: "kvm", Mem: 128, Rootfs: "openwrt_kvm", Line: 1,
			Eths: []Eth{{Lans: []string{"lan_two"}, Line: 1}, {Lans: []string{"lan_three"}, Line: 1}, {Lans: []string{"lan_one"}, Line: 1}},
		}}}},
		{"design sample", designSample, &Topology{ConfigPath: ".", VMs: []VM{{
			Name: "ROUTER1", Type: "kvm", Mem: 128, Rootfs: "busybox", Line: 3,
			Eths: []Eth{{Lans: []string{"lan_two"}, Line: 4}, {Lans: []string{"lan_one", "lan_x"}, Line: 4}},
		}}, Tux: []Tux{{Name: "nat", Kind: "slirp", Lans: []string{"lan_one"}, Line: 6}}}},
		{"empty", `<TOPOLOGY/>`, &Topology{}},
		{"xml header and comments", "<?xml version=\"1.0\"?>\n<!-- lab -->\n<TOPOLOGY><!-- none --></TOPOLOGY>\n", &Topology{}},
		{"extensions", `<TOPOLOGY>
<VM>
  <name>A</name> <type> kvm </type> <mem>64</mem> <cpu> 2 </cpu> <rootfs>busybox</rootfs>
  <kernel> vmlinuz </kernel> <transport> daemon </transport>
  <eth/>
  <eth> <vlan>l1</vlan> <impair> delay=50ms   loss=1% </impair> </eth>
  <x> 10 </x> <y>-20</y>
</VM>
<TUX> <name>t</name> <type> VXLAN </type> <vlan>l1</vlan> <remote> 10.0.0.2,10.0.0.3 </remote> <vni> 42 </vni> <impair>down</impair> <x>1</x><y>2</y></TUX>
<TUX> <name>s</name> <type>slirp</type> <forward> tcp 127.0.0.1:2222 10.0.2.15:22 </forward> </TUX>
<LAN> <name> l2 </name> <x>5</x> <y>6</y> </LAN>
</TOPOLOGY>`, &Topology{
			VMs: []VM{{Name: "A", Type: "kvm", Mem: 64, CPU: 2, Rootfs: "busybox", Kernel: "vmlinuz", Transport: "daemon", Line: 2,
				Eths: []Eth{{Line: 5}, {Lans: []string{"l1"}, Impair: "delay=50ms loss=1%", Line: 6}}, X: ip(10), Y: ip(-20)}},
			Tux: []Tux{
				{Name: "t", Kind: "vxlan", Lans: []string{"l1"}, Options: []Option{{"remote", "10.0.0.2,10.0.0.3"}, {"vni", "42"}}, Impair: "down", X: ip(1), Y: ip(2), Line: 9},
				{Name: "s", Kind: "slirp", Forwards: []Forward{{"tcp", "127.0.0.1:2222", "10.0.2.15:22"}}, Line: 10},
			},
			Lans: []Lan{{Name: "l2", X: ip(5), Y: ip(6), Line: 11}},
		}},
		{"k8s node pin", `<TOPOLOGY><VM><name>a</name><type>cnt</type><k8s_node> node-2.lab </k8s_node></VM></TOPOLOGY>`,
			&Topology{VMs: []VM{{Name: "a", Type: "cnt", K8sNode: "node-2.lab", Line: 1}}}},
		{"any case elements", `<topology><vm><NAME>a</NAME><Eth><VLAN>x</VLAN></Eth></vm></topology>`, &Topology{VMs: []VM{{Name: "a", Line: 1, Eths: []Eth{{Lans: []string{"x"}, Line: 1}}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("topology", []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			tc.want.File = "topology"
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // each must appear, in order, one per error
	}{
		{"empty lan", "<TOPOLOGY>\n<VM><name>R1</name>\n<eth/><eth/>\n<eth> <vlan> </vlan> </eth>\n</VM></TOPOLOGY>",
			[]string{`topology.xml:4: VM "R1": eth 2 names lan "" (empty)`}},
		{"not xml", "<TOPOLOGY>\n<VM>\n</TOPOLOGY>", []string{"topology.xml:3: not well-formed XML"}},
		{"empty file", "", []string{"topology.xml:1: no <TOPOLOGY> element"}},
		{"wrong root", "<cloonix_config/>", []string{"topology.xml:1: <cloonix_config>: the file must start with <TOPOLOGY>"}},
		{"two roots", "<TOPOLOGY/>\n<TOPOLOGY/>", []string{"topology.xml:2: <TOPOLOGY> after </TOPOLOGY>"}},
		{"text outside", "<TOPOLOGY/> hello", []string{`text "hello" outside <TOPOLOGY>`}},
		{"doctype", "<!DOCTYPE x [<!ENTITY a \"b\">]><TOPOLOGY/>", []string{"directives"}},
		{"attribute", `<TOPOLOGY><VM name="a"/></TOPOLOGY>`, []string{`<VM name=...>: attributes are not used`}},
		{"unknown top", "<TOPOLOGY>\n<ROUTER/></TOPOLOGY>", []string{"topology.xml:2: <ROUTER> inside <TOPOLOGY>: unknown element"}},
		{"no name", "<TOPOLOGY>\n<VM><mem>64</mem></VM></TOPOLOGY>", []string{"topology.xml:2: <VM> has no <name>"}},
		{"bad name", "<TOPOLOGY><VM><name> a b </name></VM></TOPOLOGY>", []string{`<VM> <name>: VM name "a b" has ' '`}},
		{"bad type", "<TOPOLOGY><VM><name>a</name>\n<type>xen</type></VM></TOPOLOGY>", []string{`topology.xml:2: VM "a": <type> is "xen"; use KVM (QEMU) or UML`}},
		{"bad mem", "<TOPOLOGY><VM><name>a</name><mem> lots </mem></VM></TOPOLOGY>", []string{`VM "a": <mem> is "lots"; give a whole number`}},
		{"zero mem", "<TOPOLOGY><VM><name>a</name><mem>0</mem></VM></TOPOLOGY>", []string{`VM "a": <mem> is "0"`}},
		{"bad cpu", "<TOPOLOGY><VM><name>a</name><cpu>-1</cpu></VM></TOPOLOGY>", []string{`VM "a": <cpu> is "-1"`}},
		{"uml cpu", "<TOPOLOGY><VM><name>a</name><type>UML</type><cpu>2</cpu></VM></TOPOLOGY>", []string{`VM "a": <cpu> 2 with <type> UML`}},
		{"small mem", "<TOPOLOGY><VM><name>a</name><mem>16</mem></VM></TOPOLOGY>", []string{`VM "a": <mem> is "16"; give a whole number from 32`}},
		{"twice", "<TOPOLOGY><VM><name>a</name><mem>100</mem><mem>200</mem></VM></TOPOLOGY>", []string{`VM "a": <mem> given twice`}},
		{"two names", "<TOPOLOGY><VM><name>a</name><name>b</name></VM></TOPOLOGY>", []string{`VM "a": <name> given twice`}},
		{"rootfs path", "<TOPOLOGY><VM><name>a</name><rootfs>../../etc/shadow</rootfs></VM></TOPOLOGY>", []string{`VM "a": <rootfs>: rootfs name "../../etc/shadow" may not contain ".."`}},
		{"text in vm", "<TOPOLOGY><VM><name>a</name> oops </VM></TOPOLOGY>", []string{`VM "a": text "oops" inside <VM>`}},
		{"leaf with kids", "<TOPOLOGY><VM><name><x/></name></VM></TOPOLOGY>", []string{`VM <name> holds <x>; it takes a value only`}},
		{"bad k8s node", "<TOPOLOGY><VM><name>a</name><k8s_node>Node_1</k8s_node></VM></TOPOLOGY>", []string{`VM "a": <k8s_node> is "Node_1"; want a Kubernetes node name`}},
		{"k8s node twice", "<TOPOLOGY><VM><name>a</name><k8s_node>n1</k8s_node><k8s_node>n2</k8s_node></VM></TOPOLOGY>", []string{`VM "a": <k8s_node> given twice`}},
		{"unknown in vm", "<TOPOLOGY><VM><name>a</name><disk>x</disk></VM></TOPOLOGY>", []string{`VM "a": <disk>: unknown element`}},
		{"dup lan in eth", "<TOPOLOGY><VM><name>a</name><eth><vlan>x</vlan><vlan>x</vlan></eth></VM></TOPOLOGY>", []string{`VM "a": eth 0 names lan "x" twice`}},
		{"bad lan", "<TOPOLOGY><VM><name>a</name><eth><vlan>x/y</vlan></eth></VM></TOPOLOGY>", []string{`VM "a": eth 0: lan name "x/y" has '/'`}},
		{"unknown in eth", "<TOPOLOGY><VM><name>a</name><eth><lan>x</lan></eth></VM></TOPOLOGY>", []string{`VM "a": eth 0: <lan> unknown`}},
		{"bad impair", "<TOPOLOGY><VM><name>a</name><eth><impair>slow</impair></eth></VM></TOPOLOGY>", []string{`VM "a": eth 0 <impair> "slow": `}},
		{"dup vm", "<TOPOLOGY>\n<VM><name>a</name></VM>\n<VM><name>a</name></VM></TOPOLOGY>", []string{`topology.xml:3: VM "a": a second VM with this name (the first is at line 2)`}},
		{"dup tux", "<TOPOLOGY>\n<TUX><name>a</name><type>tap</type></TUX>\n<TUX><name>a</name><type>tap</type></TUX></TOPOLOGY>", []string{`topology.xml:3: TUX "a": a second TUX`}},
		{"tux no type", "<TOPOLOGY><TUX><name>a</name></TUX></TOPOLOGY>", []string{`TUX "a": no <type>`}},
		{"tux bad type", "<TOPOLOGY><TUX><name>a</name><type>vde</type></TUX></TOPOLOGY>", []string{`TUX "a": <type> is "vde"; use one of slirp, tap, t2t, vxlan`}},
		{"tux reserved option", "<TOPOLOGY><TUX><name>a</name><type>tap</type><kind>x</kind></TUX></TOPOLOGY>", []string{`TUX "a": <kind>: unknown element`}},
		{"tux upper option", "<TOPOLOGY><TUX><name>a</name><type>tap</type><IfName>x</IfName></TUX></TOPOLOGY>", []string{`TUX "a": <IfName>: unknown element`}},
		{"tux empty option", "<TOPOLOGY><TUX><name>a</name><type>tap</type><ifname> </ifname></TUX></TOPOLOGY>", []string{`TUX "a": <ifname> is ""`}},
		{"tux option of another kind", "<TOPOLOGY><TUX><name>a</name><peer>h:1</peer>\n<type>tap</type></TUX></TOPOLOGY>", []string{`topology.xml:1: TUX "a": <peer>: a tap tux takes no such option (it takes: <ifname>)`}},
		{"tux bad forward", "<TOPOLOGY><TUX><name>a</name><type>slirp</type><forward>tcp 22</forward></TUX></TOPOLOGY>", []string{`TUX "a": <forward> is "tcp 22"`}},
		{"forward not slirp", "<TOPOLOGY><TUX><name>a</name><type>tap</type><forward>tcp 1:2 3:4</forward></TUX></TOPOLOGY>", []string{`TUX "a": <forward> needs <type> slirp`}},
		{"tux empty lan", "<TOPOLOGY><TUX><name>a</name><type>tap</type><vlan/></TUX></TOPOLOGY>", []string{`TUX "a": names lan "" (empty)`}},
		{"lan no name", "<TOPOLOGY><LAN><x>1</x><y>1</y></LAN></TOPOLOGY>", []string{`<LAN> has no <name>`}},
		{"lan twice", "<TOPOLOGY><LAN><name>l</name></LAN><LAN><name>l</name></LAN></TOPOLOGY>", []string{`LAN "l": given twice`}},
		{"half position", "<TOPOLOGY>\n<TUX><name>t</name><type>tap</type><y>3</y></TUX></TOPOLOGY>", []string{`topology.xml:2: TUX "t": give both <x> and <y>, or neither`}},
		{"bad position", "<TOPOLOGY><VM><name>a</name><x>left</x></VM></TOPOLOGY>", []string{`VM "a": <x> is "left"`}},
		{"config path up", "<TOPOLOGY><config_path> ../x </config_path></TOPOLOGY>", []string{`<config_path> "../x" leaves the topology file's folder`}},
		{"config path abs", "<TOPOLOGY><config_path>/etc</config_path></TOPOLOGY>", []string{`<config_path> "/etc" is absolute`}},
		{"config path twice", "<TOPOLOGY><config_path>.</config_path><config_path>.</config_path></TOPOLOGY>", []string{`<config_path> given twice`}},
		{"deep", "<TOPOLOGY>" + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20) + "</TOPOLOGY>", []string{"nested deeper"}},
		{"several errors", "<TOPOLOGY>\n<VM><name>a</name><mem>x</mem></VM>\n<VM><name>b</name><type>y</type></VM>\n</TOPOLOGY>",
			[]string{`topology.xml:2: VM "a": <mem>`, `topology.xml:3: VM "b": <type>`}},
		{"namespace", `<TOPOLOGY xmlns:a="u"><a:VM/></TOPOLOGY>`, []string{"attributes are not used"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("topology.xml", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error; got %+v", got)
			}
			if got != nil {
				t.Errorf("a topology came back with an error")
			}
			es, ok := err.(Errors)
			if !ok {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			if len(es) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(es[i].Error(), w) {
					t.Errorf("error %d:\n got %q\nwant it to contain %q", i, es[i].Error(), w)
				}
				if !strings.HasPrefix(es[i].Error(), "topology.xml:") {
					t.Errorf("error %q does not start with file:line", es[i].Error())
				}
			}
		})
	}
}

func TestParseTooBig(t *testing.T) {
	big := "<TOPOLOGY>" + strings.Repeat(" ", MaxFile) + "</TOPOLOGY>"
	if _, err := Parse("t", []byte(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("want a size error, got %v", err)
	}
}

func TestAllLans(t *testing.T) {
	top, err := Parse("t", []byte(designSample))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := top.AllLans(), []string{"lan_one", "lan_two", "lan_x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("AllLans = %v, want %v", got, want)
	}
}

// FuzzParse: any input gives a topology or errors, never a panic; a
// topology always writes back to the same topology; an error always
// names the file and a line.
func FuzzParse(f *testing.F) {
	f.Add([]byte(seedSample))
	f.Add([]byte(designSample))
	f.Add([]byte("<TOPOLOGY><VM><name>a</name><eth><vlan>x</vlan><impair>delay=1ms</impair></eth><x>1</x></VM><TUX><name>t</name><type>slirp</type><forward>tcp a:1 b:2</forward><ifname>q</ifname></TUX><LAN><name>l</name></LAN></TOPOLOGY>"))
	f.Add([]byte("<TOPOLOGY><VM><name>\x00</name></VM>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Parse("f", data)
		if err != nil {
			if top != nil {
				t.Fatal("topology and error both returned")
			}
			for _, e := range err.(Errors) {
				if e.File != "f" || e.Line < 1 {
					t.Fatalf("error without file or line: %#v", e)
				}
			}
			return
		}
		again, err := Parse("f", top.Bytes())
		if err != nil {
			t.Fatalf("written file does not parse: %v\n%s", err, top.Bytes())
		}
		if !sameTopology(top, again) {
			t.Fatalf("round trip changed the topology:\n%+v\n%+v", top, again)
		}
	})
}
