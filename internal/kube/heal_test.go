package kube

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// recAPI serves fixed GETs by path and records every other request (the
// method, the path and, for pods and events, the object's reason or name).
type recAPI struct {
	objs map[string]any
	reqs []string
	body map[string]map[string]any // last body by "METHOD path"
}

func newRecAPI(t *testing.T, objs map[string]any) (*Client, *recAPI) {
	a := &recAPI{objs: objs, body: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			o, ok := a.objs[r.URL.Path]
			if !ok {
				http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
				return
			}
			json.NewEncoder(w).Encode(o)
			return
		}
		var b map[string]any
		data, _ := io.ReadAll(r.Body)
		json.Unmarshal(data, &b)
		a.body[r.Method+" "+r.URL.Path] = b
		switch {
		case strings.HasSuffix(r.URL.Path, "/events"):
			a.reqs = append(a.reqs, "event "+b["reason"].(string))
		case r.Method == "POST":
			a.reqs = append(a.reqs, "create "+b["metadata"].(map[string]any)["name"].(string))
		case r.Method == "DELETE":
			g := "graceful"
			if v, ok := b["gracePeriodSeconds"]; ok && v == 0.0 {
				g = "force"
			}
			a.reqs = append(a.reqs, "delete "+r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]+" "+g)
		}
		w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	return &Client{Server: srv.URL, http: srv.Client()}, a
}

func TestLostReason(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	nodes := map[string]nodeHealth{
		"ok":    {Ready: true, Since: now.Add(-time.Hour)},
		"blip":  {Ready: false, Since: now.Add(-NodeLostAfter / 2)},
		"down":  {Ready: false, Since: now.Add(-time.Minute)},
		"never": {Ready: false},
	}
	tests := []struct {
		node  string
		nodes map[string]nodeHealth
		want  string
	}{
		{"ok", nodes, ""},
		{"blip", nodes, ""},
		{"down", nodes, "Kubernetes node down not Ready for 1m0s"},
		{"never", nodes, ""},
		{"gone", nodes, "Kubernetes node gone is gone"},
		{"", nodes, ""},   // not scheduled yet
		{"gone", nil, ""}, // nodes unread: nothing moves
	}
	for _, tt := range tests {
		if got := lostReason(tt.node, tt.nodes, now); got != tt.want {
			t.Errorf("lostReason(%q) = %q, want %q", tt.node, got, tt.want)
		}
	}
}

// TestReconcileHeal: pods on a Kubernetes node gone are force-deleted;
// unpinned ones are created again (the scheduler places them), pinned
// ones wait for their node (one WaitingForNode event, the lab Degraded)
// and come back with it.
func TestReconcileHeal(t *testing.T) {
	now := time.Now()
	ready := map[string]nodeHealth{"n1": {Ready: true, Since: now.Add(-time.Hour)}, "n2": {Ready: true, Since: now.Add(-time.Hour)}}
	n2down := map[string]nodeHealth{"n1": ready["n1"], "n2": {Since: now.Add(-time.Minute)}}
	n2blip := map[string]nodeHealth{"n1": ready["n1"], "n2": {Since: now.Add(-time.Second)}}
	n2gone := map[string]nodeHealth{"n1": ready["n1"]}
	onN2 := []Pod{pod("lab-a", "a", "n1", "ua"), pod("lab-b", "b", "n2", "ub"), pod("lab-c", "c", "n2", "uc")}
	terminating := pod("lab-b", "b", "n2", "ub")
	ts := "2026-01-01T00:00:00Z"
	terminating.Metadata.DeletionTimestamp = &ts
	tests := []struct {
		name      string
		pods      []Pod
		nodes     map[string]nodeHealth
		prevC     string // C's phase in the last status
		reqs      []string
		phase     string
		nodePhase map[string]string
	}{
		{"all well", onN2, ready, "Running", nil, "Running",
			map[string]string{"a": "Running", "b": "Running", "c": "Running"}},
		{"a short blip moves nothing", onN2, n2blip, "Running", nil, "Running",
			map[string]string{"a": "Running", "b": "Running", "c": "Running"}},
		{"node down", onN2, n2down, "Running", []string{
			"event NodeLost", "delete lab-b force", "event Rescheduled", "create lab-b",
			"event NodeLost", "delete lab-c force", "event WaitingForNode"}, PhaseDegraded,
			map[string]string{"a": "Running", "b": "Pending", "c": PhaseWaitingForNode}},
		{"node object deleted", onN2, n2gone, "Running", []string{
			"event NodeLost", "delete lab-b force", "event Rescheduled", "create lab-b",
			"event NodeLost", "delete lab-c force", "event WaitingForNode"}, PhaseDegraded,
			map[string]string{"a": "Running", "b": "Pending", "c": PhaseWaitingForNode}},
		{"an evicted pod stuck terminating", []Pod{pod("lab-a", "a", "n1", "ua"), terminating}, n2down, PhaseWaitingForNode, []string{
			"event NodeLost", "delete lab-b force", "event Rescheduled", "create lab-b"}, PhaseDegraded,
			map[string]string{"a": "Running", "b": "Pending", "c": PhaseWaitingForNode}},
		{"still waiting: no new event", []Pod{pod("lab-a", "a", "n1", "ua"), pod("lab-b", "b", "n1", "ub2")}, n2down, PhaseWaitingForNode,
			nil, PhaseDegraded, map[string]string{"a": "Running", "b": "Running", "c": PhaseWaitingForNode}},
		{"pinned node back", []Pod{pod("lab-a", "a", "n1", "ua"), pod("lab-b", "b", "n1", "ub2")}, ready, PhaseWaitingForNode,
			[]string{"event CreatingPod", "create lab-c"}, "Pending", map[string]string{"a": "Running", "b": "Running", "c": "Pending"}},
		{"nodes unreadable: nothing moves", onN2, nil, "Running", nil, "Running",
			map[string]string{"a": "Running", "b": "Running", "c": "Running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := Lab{Metadata: Meta{Name: "lab", Namespace: "ns"}}
			lab.Spec.Nodes = []LabNode{{Name: "a", K8sNode: "n1"}, {Name: "b"}, {Name: "c", K8sNode: "n2"}}
			lab.Status.Nodes = []NodeStatus{{Name: "c", Phase: tt.prevC}}
			k, api := newRecAPI(t, map[string]any{"/api/v1/namespaces/ns/pods": podList{Items: tt.pods}})
			if err := k.reconcile(&lab, &round{all: []Lab{lab}, nodes: tt.nodes, now: now}, io.Discard); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(api.reqs, tt.reqs) {
				t.Errorf("requests %q\nwant %q", api.reqs, tt.reqs)
			}
			st := api.body["PATCH /apis/cloonix.io/v1alpha1/namespaces/ns/labs/lab/status"]["status"].(map[string]any)
			if st["phase"] != tt.phase {
				t.Errorf("lab phase %v, want %s", st["phase"], tt.phase)
			}
			got := map[string]string{}
			for _, n := range st["nodes"].([]any) {
				m := n.(map[string]any)
				got[m["name"].(string)] = m["phase"].(string)
			}
			if !reflect.DeepEqual(got, tt.nodePhase) {
				t.Errorf("node phases %v, want %v", got, tt.nodePhase)
			}
		})
	}
}

// TestLabPodTolerations: a lab pod leaves a lost node after tolerateLost
// even without the controller (Kubernetes' default is 300 s).
func TestLabPodTolerations(t *testing.T) {
	lab := &Lab{Metadata: Meta{Name: "lab", Namespace: "ns"}}
	p := labPod(lab, LabNode{Name: "A"})
	tol := p["spec"].(obj)["tolerations"].([]obj)
	var keys []string
	for _, t1 := range tol {
		if t1["effect"] != "NoExecute" || t1["tolerationSeconds"] != tolerateLost {
			t.Errorf("toleration %v", t1)
		}
		keys = append(keys, t1["key"].(string))
	}
	sort.Strings(keys)
	if want := []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("tolerations for %v, want %v", keys, want)
	}
}

// TestListWaiting: kube list shows a pinned node whose Kubernetes node is
// away as waiting on that node, a node without pod and status as pending.
func TestListWaiting(t *testing.T) {
	lab := Lab{Metadata: Meta{Name: "lab", Namespace: "ns"}}
	lab.Spec.Nodes = []LabNode{{Name: "a", K8sNode: "n1"}, {Name: "c", K8sNode: "n2"}, {Name: "d"}}
	lab.Status.Nodes = []NodeStatus{{Name: "c", Phase: PhaseWaitingForNode, K8sNode: "n2"}}
	k := fakeAPI(t, map[string]any{
		"/apis/cloonix.io/v1alpha1/namespaces/ns/labs/lab": lab,
		"/api/v1/namespaces/ns/pods":                       podList{Items: []Pod{pod("lab-a", "a", "n1", "ua")}},
	})
	l, err := k.List("ns", "lab")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range l.VMs {
		got[v.Name] = v.State + " " + v.K8sNode
	}
	if want := map[string]string{"a": "running n1", "c": "waiting n2", "d": "pending "}; !reflect.DeepEqual(got, want) {
		t.Errorf("list %v, want %v", got, want)
	}
}
