package kube

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"cloonix/internal/machine"
	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

func TestPodName(t *testing.T) {
	tests := []struct{ lab, node, want string }{
		{"lab1", "r1", "lab1-r1"},
		{"lab1", "A", "lab1-a-"},         // upper case: hashed suffix
		{"lab1", "r_1.x", "lab1-r-1-x-"}, // other characters too
	}
	for _, tt := range tests {
		got := PodName(tt.lab, tt.node)
		if !strings.HasPrefix(got, tt.want) || (strings.HasSuffix(tt.want, "-") && len(got) != len(tt.want)+6) ||
			(!strings.HasSuffix(tt.want, "-") && got != tt.want) {
			t.Errorf("PodName(%s, %s) = %s, want %s...", tt.lab, tt.node, got, tt.want)
		}
	}
	if PodName("l", "A") == PodName("l", "a") {
		t.Error("A and a share a pod name")
	}
	if n := PodName("lab", strings.Repeat("x", 100)); len(n) > 63 {
		t.Errorf("pod name %d long", len(n))
	}
}

func TestCheckLabName(t *testing.T) {
	for name, ok := range map[string]bool{"lab1": true, "a": true, "Lab": false, "-x": false, "x-": false, "a.b": false, "": false} {
		if err := CheckLabName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func parse(t *testing.T, text string) *topology.Topology {
	t.Helper()
	p := filepath.Join(t.TempDir(), "topology")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	top, err := topology.ParseFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestSpecFromTopology(t *testing.T) {
	top := parse(t, `<TOPOLOGY>
 <VM> <name> A </name> <type> cnt </type> <rootfs> busybox </rootfs>
  <eth> <vlan> l2 </vlan> <vlan> l1 </vlan> </eth> <eth> </eth> </VM>
 <VM> <name> B </name> <type> cnt </type> <rootfs> debian-frr </rootfs> <k8s_node> n2 </k8s_node> <eth> <vlan> l1 </vlan> </eth> </VM>
</TOPOLOGY>`)
	spec, err := SpecFromTopology(top, "reg:5000")
	if err != nil {
		t.Fatal(err)
	}
	want := LabSpec{Nodes: []LabNode{
		{Name: "A", Image: "reg:5000/cloonix/rootfs-busybox:latest", Eths: []LabEth{
			{MAC: machine.MAC("A", 0), Lans: []string{"l1", "l2"}}, {MAC: machine.MAC("A", 1)}}},
		{Name: "B", Image: "reg:5000/cloonix/rootfs-debian-frr:latest", K8sNode: "n2", Eths: []LabEth{{MAC: machine.MAC("B", 0), Lans: []string{"l1"}}}},
	}}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("got %+v\nwant %+v", spec, want)
	}
	if got := spec.Lans(); !reflect.DeepEqual(got, []string{"l1", "l2"}) {
		t.Errorf("lans %v", got)
	}

	uml := parse(t, `<TOPOLOGY> <VM> <name> U </name> <type> uml </type> </VM> </TOPOLOGY>`)
	if _, err := SpecFromTopology(uml, ""); err == nil || !strings.Contains(err.Error(), "cnt nodes only") {
		t.Errorf("a uml node: %v", err)
	}
}

func TestAssignVNIs(t *testing.T) {
	lab := func(name string, vnis map[string]int, lans ...string) Lab {
		l := Lab{Metadata: Meta{Name: name}, Status: LabStatus{VNIs: vnis}}
		l.Spec.Nodes = []LabNode{{Name: "n", Eths: []LabEth{{Lans: lans}}}}
		return l
	}
	other := lab("other", map[string]int{"x": 1, "y": 3}, "x", "y")
	mine := lab("mine", map[string]int{"b": 2, "gone": 7}, "a", "b", "c")
	got, err := assignVNIs(&mine, []Lab{other, mine})
	if err != nil {
		t.Fatal(err)
	}
	// b keeps 2; a and c take the lowest free (4 and 5 after 1, 2, 3); gone is dropped.
	if want := map[string]int{"a": 4, "b": 2, "c": 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// A VNI another lab holds is given up (two labs never share one).
	clash := lab("clash", map[string]int{"a": 1}, "a")
	if got, _ := assignVNIs(&clash, []Lab{other, clash}); got["a"] == 1 {
		t.Errorf("clash kept VNI 1 of lab other: %v", got)
	}
}

func TestExecStatus(t *testing.T) {
	tests := []struct {
		json string
		code int
		err  bool
	}{
		{`{"status":"Success"}`, 0, false},
		{`{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`, 3, false},
		{`{"status":"Failure","message":"container not found"}`, -1, true},
		{`not json`, -1, true},
	}
	for _, tt := range tests {
		code, err := execStatus([]byte(tt.json))
		if code != tt.code || (err != nil) != tt.err {
			t.Errorf("%s: %d, %v", tt.json, code, err)
		}
	}
}

// fakeAPI serves fixed objects by path (query left out).
func fakeAPI(t *testing.T, objs map[string]any) *Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, ok := objs[r.URL.Path]
		if !ok || r.Method != "GET" {
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(o)
	}))
	t.Cleanup(srv.Close)
	return &Client{Server: srv.URL, http: srv.Client()}
}

type fakeSwitch struct {
	lab  proto.Lab
	reqs []string
}

func (f *fakeSwitch) List() (*proto.Lab, error) { return &f.lab, nil }
func (f *fakeSwitch) Do(r proto.Request, _ any) error {
	switch r := r.(type) {
	case proto.AddTux:
		f.reqs = append(f.reqs, fmt.Sprintf("add %s %s %v", r.Kind, r.Name, r.OptionMap()))
	case proto.DelTux:
		f.reqs = append(f.reqs, "del "+r.Name)
	case proto.Attach:
		f.reqs = append(f.reqs, "attach "+r.Port+" "+r.Lan)
	case proto.Detach:
		f.reqs = append(f.reqs, "detach "+r.Port+" "+r.Lan)
	}
	return nil
}

type fakeNet struct{ moved []string }

func (f *fakeNet) PodPID(uid string) int { return 100 }
func (f *fakeNet) Move(ifname string, pid int, name, mac string) error {
	f.moved = append(f.moved, ifname+" "+name+" "+mac)
	return nil
}

func pod(name, node, k8s, uid string) Pod {
	var p Pod
	p.Metadata = Meta{Name: name, UID: uid, Labels: map[string]string{LabelLab: "lab", LabelNode: node}}
	p.Spec.NodeName = k8s
	p.Status.Phase = "Running"
	return p
}

// TestSwitchSync: the node's pods get a tap each (moved in as ethN with
// their MAC, on their lans), a lan spanning nodes gets a VXLAN tux to
// the other node, a lan that stays local gets none, and a stale tux of
// this agent goes.
func TestSwitchSync(t *testing.T) {
	lab := Lab{Metadata: Meta{Name: "lab"}, Status: LabStatus{VNIs: map[string]int{"l1": 1, "l2": 2}}}
	lab.Spec.Nodes = []LabNode{
		{Name: "A", Eths: []LabEth{{MAC: "02:c1:00:00:00:0a", Lans: []string{"l1"}}}},
		{Name: "B", Eths: []LabEth{{MAC: "02:c1:00:00:00:0b", Lans: []string{"l1", "l2"}}}},
		{Name: "C", Eths: []LabEth{{MAC: "02:c1:00:00:00:0c", Lans: []string{"l2"}}}},
	}
	nodes := map[string]any{"items": []any{
		map[string]any{"metadata": map[string]any{"name": "n1"}, "status": map[string]any{"addresses": []any{map[string]any{"type": "InternalIP", "address": "10.1.0.1"}}}},
		map[string]any{"metadata": map[string]any{"name": "n2"}, "status": map[string]any{"addresses": []any{map[string]any{"type": "InternalIP", "address": "10.1.0.2"}}}},
	}}
	k := fakeAPI(t, map[string]any{
		"/apis/cloonix.io/v1alpha1/namespaces/ns/labs": labList{Items: []Lab{lab}},
		"/api/v1/namespaces/ns/pods": podList{Items: []Pod{
			pod("lab-a", "A", "n1", "ua"), pod("lab-b", "B", "n1", "ub"), pod("lab-c", "C", "n2", "uc")}},
		"/api/v1/nodes": nodes,
	})
	sw := &fakeSwitch{lab: proto.Lab{Tux: []proto.Tux{{Name: "kdeadbeef00", Kind: "tap"}, {Name: "nat", Kind: "slirp"}}}}
	nl := &fakeNet{}
	s := &Switch{K: k, NS: "ns", Node: "n1", SW: sw, Net: nl, Log: &strings.Builder{}}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	ta, tb := tapName("ua", 0), tapName("ub", 0)
	want := map[string]bool{
		"del kdeadbeef00": true,
		"add tap " + ta + " map[ifname:" + ta + "]": true, "attach " + ta + " lab.l1": true,
		"add tap " + tb + " map[ifname:" + tb + "]": true, "attach " + tb + " lab.l1": true, "attach " + tb + " lab.l2": true,
		"add vxlan vx2 map[local:10.1.0.1 port:20002 remote:10.1.0.2 vni:2]": true, "attach vx2 lab.l2": true,
	}
	for _, r := range sw.reqs {
		if !want[r] {
			t.Errorf("unexpected request %q", r)
		}
		delete(want, r)
	}
	for r := range want {
		t.Errorf("missing request %q", r)
	}
	wantMoved := []string{ta + " eth0 02:c1:00:00:00:0a", tb + " eth0 02:c1:00:00:00:0b"}
	if !reflect.DeepEqual(nl.moved, wantMoved) && !reflect.DeepEqual(nl.moved, []string{wantMoved[1], wantMoved[0]}) {
		t.Errorf("moved %v, want %v", nl.moved, wantMoved)
	}

	// Next round, the taps exist: only lan changes are made (B leaves l2).
	lab.Spec.Nodes[1].Eths[0].Lans = []string{"l1"}
	sw.lab.Tux = []proto.Tux{{Name: ta, Kind: "tap", Lans: []string{"lab.l1"}}, {Name: tb, Kind: "tap", Lans: []string{"lab.l1", "lab.l2"}},
		{Name: "vx2", Kind: "vxlan", Lans: []string{"lab.l2"}, Opts: map[string]string{"remote": "10.1.0.2"}}}
	sw.reqs, nl.moved = nil, nil
	k2 := fakeAPI(t, map[string]any{
		"/apis/cloonix.io/v1alpha1/namespaces/ns/labs": labList{Items: []Lab{lab}},
		"/api/v1/namespaces/ns/pods": podList{Items: []Pod{
			pod("lab-a", "A", "n1", "ua"), pod("lab-b", "B", "n1", "ub"), pod("lab-c", "C", "n2", "uc")}},
		"/api/v1/nodes": nodes,
	})
	s.K = k2
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"del vx2", "detach " + tb + " lab.l2"}; !reflect.DeepEqual(sw.reqs, want) {
		t.Errorf("second round: %q, want %q", sw.reqs, want)
	}
	if len(nl.moved) != 0 {
		t.Errorf("moved again: %v", nl.moved)
	}
}

func TestKeepPins(t *testing.T) {
	cur := LabSpec{Nodes: []LabNode{{Name: "A", K8sNode: "n1"}, {Name: "B", K8sNode: "n2"}, {Name: "gone", K8sNode: "n1"}, {Name: "C", K8sNode: "n1"}}}
	// C's file now says <k8s_node> n2: the file's pin is a new pin too.
	spec := LabSpec{Nodes: []LabNode{{Name: "A"}, {Name: "B", K8sNode: "n1"}, {Name: "new"}, {Name: "C", K8sNode: "n2"}}}
	keepPins(&spec, cur, map[string]string{"B": "n1"})
	want := []string{"n1", "n1", "", "n2"}
	for i, n := range spec.Nodes {
		if n.K8sNode != want[i] {
			t.Errorf("%s: pinned to %q, want %q", n.Name, n.K8sNode, want[i])
		}
	}
}
