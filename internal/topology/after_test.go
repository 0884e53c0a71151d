package topology

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/proto"
)

const afterFile = `
  <VM> <name> r1 </name> <type> CNT </type> <eth> <vlan> a </vlan> </eth> </VM>
  <VM> <name> r2 </name> <eth> <vlan> a </vlan> </eth> </VM>
  <VM> <name> pc </name> <after> r1 </after> <after> r2 </after> <eth> <vlan> a </vlan> </eth> </VM>
`

func TestAfter(t *testing.T) {
	top := mustParse(t, afterFile)
	if pc := top.VM("pc"); !reflect.DeepEqual(pc.After, []string{"r1", "r2"}) || top.VM("r1").Type != "cnt" {
		t.Fatalf("parsed %+v", top.VMs)
	}
	again, err := Parse("t", top.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.VM("pc").After, []string{"r1", "r2"}) || !strings.Contains(string(top.Bytes()), "<type> CNT </type>") {
		t.Errorf("written and read again:\n%s", top.Bytes())
	}
	// pc is added once r1 and r2 (added by this plan) are ready.
	p := Diff(&proto.Lab{}, top)
	f := &fake{}
	var waited []string
	p.WaitReady = func(names []string) error {
		f.calls = append(f.calls, "wait "+strings.Join(names, " "))
		waited = names
		return nil
	}
	if err := p.Apply(f, "", nil); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(f.calls, ",")
	if !strings.Contains(got, "add_vm r2,attach r2:eth0,wait r1 r2,add_vm pc") || len(waited) != 2 {
		t.Errorf("calls %s", got)
	}
	// A guest that fails stops the apply before its dependents.
	f = &fake{}
	p.WaitReady = func([]string) error { return errors.New("r1 crashed") }
	err = p.Apply(f, "", nil)
	if err == nil || !strings.Contains(err.Error(), "waiting for r1, r2: r1 crashed") || strings.Contains(strings.Join(f.calls, ","), "add_vm pc") {
		t.Errorf("err %v, calls %v", err, f.calls)
	}
}

func TestAfterErrors(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"<TOPOLOGY><VM><name>a</name><after>b</after></VM><VM><name>b</name></VM></TOPOLOGY>", `t.xml:1: VM "a": <after> b: no VM "b" earlier in the file`},
		{"<TOPOLOGY><VM><name>a</name><after>a</after></VM></TOPOLOGY>", `no VM "a" earlier`},
		{"<TOPOLOGY><VM><name>a</name><after>x/y</after></VM></TOPOLOGY>", `<after>: vm name "x/y"`},
	} {
		_, err := Parse("t.xml", []byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.file, err, c.want)
		}
	}
}
