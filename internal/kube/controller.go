package kube

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"
)

// Pod is the part of a pod cloonix reads.
type Pod struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase  string `json:"phase"`
		HostIP string `json:"hostIP"`
		PodIP  string `json:"podIP"`
	} `json:"status"`
}

type podList struct {
	Items []Pod `json:"items"`
}

type labList struct {
	Items []Lab `json:"items"`
}

func nsPath(ns string) string { return "/api/v1/namespaces/" + url.PathEscape(ns) }

func labsPath(ns string) string {
	return LabsPath + "/namespaces/" + url.PathEscape(ns) + "/labs"
}

// ListPods lists the pods of ns carrying labels.
func (c *Client) ListPods(ns string, labels map[string]string) ([]Pod, error) {
	var l podList
	err := c.Get(nsPath(ns)+"/pods"+Selector(labels), &l)
	return l.Items, err
}

// ListLabs lists the labs of ns.
func (c *Client) ListLabs(ns string) ([]Lab, error) {
	var l labList
	err := c.Get(labsPath(ns), &l)
	return l.Items, err
}

// GetLab reads one lab.
func (c *Client) GetLab(ns, name string) (*Lab, error) {
	var l Lab
	if err := c.Get(labsPath(ns)+"/"+url.PathEscape(name), &l); err != nil {
		if IsNotFound(err) {
			return nil, fmt.Errorf("no lab %q in namespace %s (kubectl get labs -n %s)", name, ns, ns)
		}
		return nil, err
	}
	return &l, nil
}

// maxVNI bounds the VNIs the controller hands out: the switch's VXLAN tux
// of a lan listens on UDP port VXLANPortBase+VNI.
const (
	maxVNI        = 9999
	VXLANPortBase = 20000
)

// assignVNIs gives each lan of lab without one the lowest VNI no lab of
// the namespace uses; lans gone from the spec lose theirs.
func assignVNIs(lab *Lab, all []Lab) (map[string]int, error) {
	used := map[int]bool{}
	for _, o := range all {
		if o.Metadata.Name == lab.Metadata.Name {
			continue
		}
		for _, v := range o.Status.VNIs {
			used[v] = true
		}
	}
	out := map[string]int{}
	for _, lan := range lab.Spec.Lans() {
		if v, ok := lab.Status.VNIs[lan]; ok && !used[v] {
			out[lan] = v
			used[v] = true
		}
	}
	next := 1
	for _, lan := range lab.Spec.Lans() {
		if _, ok := out[lan]; ok {
			continue
		}
		for used[next] {
			next++
		}
		if next > maxVNI {
			return nil, fmt.Errorf("lab %s: no free VXLAN id left (%d lans in the namespace)", lab.Metadata.Name, maxVNI)
		}
		out[lan] = next
		used[next] = true
	}
	return out, nil
}

// Reconcile brings one lab's pods to its spec and writes its status: a
// missing pod (deleted, or its node gone) is created again, a pod on a
// Kubernetes node that went away is moved (heal.go), a pod of a node no
// longer in the spec, or with another image, is deleted.
func (c *Client) Reconcile(lab *Lab, all []Lab, log io.Writer) error {
	nodes, err := c.nodeHealths()
	if err != nil {
		fmt.Fprintf(log, "controller: reading nodes (nothing is moved this round): %v\n", err)
		nodes = nil
	}
	return c.reconcile(lab, &round{all: all, nodes: nodes, now: time.Now()}, log)
}

func (c *Client) reconcile(lab *Lab, r *round, log io.Writer) error {
	if lab.Metadata.DeletionTimestamp != nil {
		return nil // its pods go with it (owner references)
	}
	ns := lab.Metadata.Namespace
	vnis, err := assignVNIs(lab, r.all)
	if err != nil {
		return err
	}
	pods, err := c.ListPods(ns, map[string]string{LabelLab: lab.Metadata.Name})
	if err != nil {
		return err
	}
	say := func(reason, msg string) {
		fmt.Fprintf(log, "lab %s: %s\n", lab.Metadata.Name, msg)
		c.event(lab, reason, msg)
	}
	byNode := map[string]Pod{}
	for _, p := range pods {
		byNode[p.Metadata.Labels[LabelNode]] = p
	}
	want := map[string]bool{}
	status := LabStatus{VNIs: vnis, Phase: "Running"}
	for _, n := range lab.Spec.Nodes {
		want[n.Name] = true
		st, err := c.reconcileNode(lab, n, byNode, r, say)
		if err != nil {
			return err
		}
		switch {
		case st.Phase == "Running":
			status.Ready++
		case st.Phase == PhaseWaitingForNode:
			status.Phase = PhaseDegraded
		case status.Phase == "Running":
			status.Phase = "Pending"
		}
		status.Nodes = append(status.Nodes, st)
	}
	for node, p := range byNode {
		if !want[node] && p.Metadata.DeletionTimestamp == nil {
			say("DeletingPod", fmt.Sprintf("node %s left the lab, deleting pod %s", node, p.Metadata.Name))
			if err := c.Delete(nsPath(ns) + "/pods/" + p.Metadata.Name); err != nil {
				return err
			}
		}
	}
	sort.Slice(status.Nodes, func(i, j int) bool { return status.Nodes[i].Name < status.Nodes[j].Name })
	patch := map[string]any{"status": map[string]any{
		"phase": status.Phase, "vnis": status.VNIs, "nodes": status.Nodes, "ready": status.Ready,
	}}
	return c.MergePatch(labsPath(ns)+"/"+url.PathEscape(lab.Metadata.Name)+"/status", patch)
}

// reconcileNode brings one lab node's pod to its spec and says its state.
func (c *Client) reconcileNode(lab *Lab, n LabNode, byNode map[string]Pod, r *round, say func(reason, msg string)) (NodeStatus, error) {
	ns := lab.Metadata.Namespace
	p, ok := byNode[n.Name]
	ok, lostFrom, err := c.healNode(lab, n, p, ok, r, say)
	if err != nil {
		return NodeStatus{}, err
	}
	if ok && p.Metadata.DeletionTimestamp == nil && podImage(p) != "" && podImage(p) != n.Image {
		say("ReplacingPod", fmt.Sprintf("node %s: image changed, replacing pod %s", n.Name, p.Metadata.Name))
		if err := c.Delete(nsPath(ns) + "/pods/" + p.Metadata.Name); err != nil {
			return NodeStatus{}, err
		}
		ok = false
	}
	if !ok {
		return c.createNode(lab, n, lostFrom, r, say)
	}
	st := NodeStatus{Name: n.Name, Pod: p.Metadata.Name, K8sNode: p.Spec.NodeName, Phase: p.Status.Phase}
	if p.Metadata.DeletionTimestamp != nil {
		st.Phase = "Terminating"
	}
	return st, nil
}

func podImage(p Pod) string {
	return p.Metadata.Annotations["cloonix.io/image"]
}

// RunController reconciles every lab of ns, again and again (each round
// reads the whole state, so a missed change is caught at the next).
func (c *Client) RunController(ns string, every time.Duration, log io.Writer, stop <-chan struct{}) error {
	for {
		labs, err := c.ListLabs(ns)
		if err != nil {
			fmt.Fprintf(log, "controller: %v\n", err)
		}
		nodes, err := c.nodeHealths()
		if err != nil {
			fmt.Fprintf(log, "controller: reading nodes (nothing is moved this round): %v\n", err)
			nodes = nil
		}
		r := &round{all: labs, nodes: nodes, now: time.Now()}
		for i := range labs {
			if labs[i].Metadata.Namespace == "" {
				labs[i].Metadata.Namespace = ns
			}
			if err := c.reconcile(&labs[i], r, log); err != nil {
				fmt.Fprintf(log, "controller: %v\n", err)
			}
		}
		select {
		case <-stop:
			return nil
		case <-time.After(every):
		}
	}
}

// event records what the controller did on the Lab (kubectl describe lab
// shows it); a failure to record is not the lab's failure.
func (c *Client) event(lab *Lab, reason, msg string) {
	now := time.Now().UTC().Format(time.RFC3339)
	ev := map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{"generateName": lab.Metadata.Name + ".", "namespace": lab.Metadata.Namespace},
		"involvedObject": map[string]any{"apiVersion": Group + "/" + Version, "kind": "Lab",
			"name": lab.Metadata.Name, "namespace": lab.Metadata.Namespace, "uid": lab.Metadata.UID},
		"reason": reason, "message": msg, "type": "Normal", "count": 1,
		"firstTimestamp": now, "lastTimestamp": now,
		"source": map[string]any{"component": "cloonix-controller"},
	}
	_ = c.Do("POST", nsPath(lab.Metadata.Namespace)+"/events", "", ev, nil)
}
