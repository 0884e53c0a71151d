package topology

import (
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/proto"
)

// TestLifecycleElements: <state>, <disk_file> and <link> parse, write
// back the same, and refuse bad values.
func TestLifecycleElements(t *testing.T) {
	src := `<TOPOLOGY>
  <VM> <name> a </name> <state> stopped </state> <disk_file> a.qcow2 </disk_file>
       <eth> <vlan> l </vlan> <link> down </link> </eth> <eth> <link> up </link> </eth> </VM>
  <TUX> <name> n </name> <type> slirp </type> <link> DOWN </link> </TUX>
</TOPOLOGY>`
	top, err := Parse("t", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	v := top.VMs[0]
	if v.State != "stopped" || v.Disk != "a.qcow2" || v.Eths[0].Link != "down" || v.Eths[1].Link != "" || top.Tux[0].Link != "down" {
		t.Fatalf("parsed %+v %+v", v, top.Tux[0])
	}
	again, err := Parse("t", top.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, top.Bytes())
	}
	if again.VMs[0].State != "stopped" || again.VMs[0].Disk != "a.qcow2" || again.VMs[0].Eths[0].Link != "down" || again.Tux[0].Link != "down" || string(again.Bytes()) != string(top.Bytes()) {
		t.Fatalf("write/parse changed it:\n%s", top.Bytes())
	}
	for _, c := range []struct{ src, want string }{
		{"<TOPOLOGY><VM><name>a</name><state>paused</state></VM></TOPOLOGY>", "use running or stopped"},
		{"<TOPOLOGY><VM><name>a</name><disk_file>../x</disk_file></VM></TOPOLOGY>", "<disk_file>"},
		{"<TOPOLOGY><VM><name>a</name><eth><link>off</link></eth></VM></TOPOLOGY>", "use up or down"},
		{"<TOPOLOGY><VM><name>a</name><disk_file>/a/../b</disk_file></VM></TOPOLOGY>", "clean absolute path"},
		{"<TOPOLOGY><TUX><name>n</name><type>slirp</type><link>x</link></TUX></TOPOLOGY>", "use up or down"},
	} {
		if _, err := Parse("t", []byte(c.src)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.src, err, c.want)
		}
	}
}

// TestDiffLifecycle: a stopped guest the file wants running is started
// (not replaced), a running one it wants stopped is stopped, link states
// follow the file, and new guests get their state and links.
func TestDiffLifecycle(t *testing.T) {
	cur := &proto.Lab{VMs: []proto.VM{
		{Name: "a", Type: "uml", State: "stopped", Eths: []proto.Eth{{Port: "a:eth0", Link: "down"}}},
		{Name: "b", Type: "uml", State: "running", Eths: []proto.Eth{{Port: "b:eth0"}}},
	}}
	top, err := Parse("t", []byte(`<TOPOLOGY>
  <VM><name>a</name><type>uml</type><eth></eth></VM>
  <VM><name>b</name><type>uml</type><state>stopped</state><eth><link>down</link></eth></VM>
  <VM><name>c</name><type>uml</type><state>stopped</state><eth><link>down</link></eth></VM>
</TOPOLOGY>`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range Diff(cur, top).Steps {
		if r, ok := s.Request("/demo").(*proto.AddVM); ok {
			got = append(got, "add_vm "+r.Name+" state="+r.State)
			continue
		}
		got = append(got, s.String())
	}
	want := []string{"add_vm c state=stopped", "link c:eth0 down", "start vm a", "link a:eth0 up", "stop vm b", "link b:eth0 down"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A guest booted from an image file is written with <disk_file>.
	saved := FromLab(&proto.Lab{VMs: []proto.VM{{Name: "s", Type: "kvm", Rootfs: "/saved/s.qcow2"}}})
	if saved.VMs[0].Disk != "/saved/s.qcow2" || saved.VMs[0].Rootfs != "" {
		t.Fatalf("FromLab of a guest on an image file: %+v", saved.VMs[0])
	}
	if r := (Step{Op: AddVM, VM: &saved.VMs[0]}).Request("").(*proto.AddVM); r.Rootfs != "/saved/s.qcow2" {
		t.Fatalf("its rootfs: %q", r.Rootfs)
	}
	if _, err := Parse("t", saved.Bytes()); err != nil {
		t.Fatalf("%v\n%s", err, saved.Bytes())
	}
	// A saved disk becomes the rootfs, inside the demo folder.
	top.VMs[2].Disk = "c.img"
	r := Step{Op: AddVM, VM: &top.VMs[2]}.Request("/demo").(*proto.AddVM)
	if r.Rootfs != "/demo/disks/c.img" {
		t.Fatalf("rootfs of a saved disk: %q", r.Rootfs)
	}
}
