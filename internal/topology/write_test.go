package topology

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sameTopology compares two topologies, ignoring line numbers and an
// absent <config_path> (written as ".").
func sameTopology(a, b *Topology) bool {
	return reflect.DeepEqual(stripLines(a), stripLines(b))
}

func stripLines(t *Topology) *Topology {
	c := *t
	c.File = ""
	if c.ConfigPath == "" {
		c.ConfigPath = "."
	}
	c.VMs = nil
	for _, v := range t.VMs {
		v.Line = 0
		eths := make([]Eth, len(v.Eths))
		for i, e := range v.Eths {
			e.Line = 0
			eths[i] = e
		}
		if len(eths) == 0 {
			eths = nil
		}
		v.Eths = eths
		c.VMs = append(c.VMs, v)
	}
	c.Tux = nil
	for _, x := range t.Tux {
		x.Line = 0
		c.Tux = append(c.Tux, x)
	}
	c.Lans = nil
	for _, l := range t.Lans {
		l.Line = 0
		c.Lans = append(c.Lans, l)
	}
	return &c
}

func TestWriteRoundTrip(t *testing.T) {
	for _, in := range []string{seedSample, designSample, `<TOPOLOGY>
<VM><name>A</name><type>uml</type><mem>64</mem><cpu>1</cpu><rootfs>busybox</rootfs><kernel>k</kernel><transport>bess</transport><k8s_node>n1</k8s_node>
<eth/><eth><vlan>l1</vlan><vlan>l2</vlan><impair>delay=5ms</impair></eth><x>3</x><y>4</y></VM>
<TUX><name>t</name><type>t2t</type><peer> 10.0.0.1:4000 </peer><vlan>l1</vlan><impair>loss=5%</impair></TUX>
<TUX><name>n</name><type>slirp</type><forward>udp 127.0.0.1:53 10.0.2.15:53</forward><forward>tcp 0.0.0.0:80 10.0.2.16:8080</forward></TUX>
<LAN><name>lone</name><x>-1</x><y>0</y></LAN>
</TOPOLOGY>`} {
		a, err := Parse("a", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out := a.Bytes()
		b, err := Parse("b", out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !sameTopology(a, b) {
			t.Errorf("round trip differs:\n%+v\n%+v\n%s", a, b, out)
		}
		// Writing again gives the same bytes: the format is stable.
		if again := b.Bytes(); string(again) != string(out) {
			t.Errorf("second write differs:\n%s\n%s", out, again)
		}
	}
}

func TestWriteSeedStyle(t *testing.T) {
	a, err := Parse("a", []byte(seedSample))
	if err != nil {
		t.Fatal(err)
	}
	want := `<TOPOLOGY>
  <config_path> . </config_path>
  <VM>
    <name> ROUTER1 </name>
    <type> KVM </type>
    <mem> 128 </mem>
    <rootfs> openwrt_kvm </rootfs>
    <eth> <vlan> lan_two </vlan> </eth>
    <eth> <vlan> lan_three </vlan> </eth>
    <eth> <vlan> lan_one </vlan> </eth>
  </VM>
</TOPOLOGY>
`
	if got := string(a.Bytes()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	a, _ := Parse("a", []byte(designSample))
	p := filepath.Join(dir, "saved")
	if err := a.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	b, err := ParseFile(p)
	if err != nil || !sameTopology(a, b) {
		t.Fatalf("saved file: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := a.WriteFile(filepath.Join(dir, "no", "such", "dir")); err == nil || !strings.Contains(err.Error(), "saving") {
		t.Errorf("want a saving error, got %v", err)
	}
}
