package kube

import (
	"fmt"
	"time"
)

// NodeLostAfter is how long a Kubernetes node may stay NotReady (or
// Unknown: its kubelet stopped reporting) before the controller moves its
// lab pods. Kubernetes itself marks a silent node Unknown after the
// controller-manager's --node-monitor-grace-period (50 s by default) and
// evicts its pods only after their tolerationSeconds (300 s by default);
// a lab node should come back sooner.
const NodeLostAfter = 10 * time.Second

// tolerateLost is how long a lab pod tolerates the not-ready and
// unreachable taints before Kubernetes evicts it (a backstop: the
// controller force-deletes it first, NodeLostAfter after the node went).
const tolerateLost = 30

// nodeHealth is a Kubernetes node's Ready condition.
type nodeHealth struct {
	Ready bool
	Since time.Time // when the condition last changed
}

// nodeHealths reads every node's Ready condition.
func (c *Client) nodeHealths() (map[string]nodeHealth, error) {
	var l struct {
		Items []k8sNode `json:"items"`
	}
	if err := c.Get("/api/v1/nodes", &l); err != nil {
		return nil, err
	}
	out := map[string]nodeHealth{}
	for _, n := range l.Items {
		h := nodeHealth{}
		for _, cnd := range n.Status.Conditions {
			if cnd.Type == "Ready" {
				h.Ready = cnd.Status == "True"
				h.Since, _ = time.Parse(time.RFC3339, cnd.LastTransitionTime)
			}
		}
		out[n.Metadata.Name] = h
	}
	return out, nil
}

// lostReason says why the pods on a Kubernetes node must move ("" when
// they need not). nodes nil means the nodes could not be read: nothing is
// moved on a guess.
func lostReason(node string, nodes map[string]nodeHealth, now time.Time) string {
	if node == "" || nodes == nil {
		return "" // not scheduled yet, or nothing known
	}
	h, ok := nodes[node]
	if !ok {
		return "Kubernetes node " + node + " is gone"
	}
	if h.Ready {
		return ""
	}
	down := now.Sub(h.Since)
	if h.Since.IsZero() || down < NodeLostAfter {
		return "" // a node that never reported, or a short blip
	}
	return fmt.Sprintf("Kubernetes node %s not Ready for %s", node, down.Round(time.Second))
}

// usable says whether a pinned node's Kubernetes node can take its pod
// (unknown nodes count as usable: the scheduler decides then).
func usable(node string, nodes map[string]nodeHealth) bool {
	if nodes == nil {
		return true
	}
	h, ok := nodes[node]
	return ok && h.Ready
}

// lostTolerations: a lab pod is evicted by Kubernetes tolerateLost after
// its node goes (instead of the default 300 s), should the controller not
// be running to move it first.
func lostTolerations(seconds int) []obj {
	var out []obj
	for _, t := range []string{"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"} {
		out = append(out, obj{"key": t, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})
	}
	return out
}

// round is what the controller read once for all labs of a round.
type round struct {
	all   []Lab
	nodes map[string]nodeHealth // nil: could not be read
	now   time.Time
}

// prevPhase is a lab node's phase in the Lab's last status.
func prevPhase(lab *Lab, node string) string {
	for _, s := range lab.Status.Nodes {
		if s.Name == node {
			return s.Phase
		}
	}
	return ""
}

// Phases of a lab node (NodeStatus.Phase) and a lab (LabStatus.Phase)
// beyond the pod's own phases.
const (
	PhaseWaitingForNode = "WaitingForNode" // pinned; its Kubernetes node is away
	PhaseDegraded       = "Degraded"       // a node waits for its Kubernetes node
)

// healNode handles one lab node whose pod p (when ok) runs on a node that
// went away: the pod is force-deleted (its kubelet can no longer confirm
// a graceful delete). It returns whether the pod is still there and the
// node it was lost from.
func (c *Client) healNode(lab *Lab, n LabNode, p Pod, ok bool, r *round, log func(reason, msg string)) (bool, string, error) {
	if !ok {
		return false, "", nil
	}
	why := lostReason(p.Spec.NodeName, r.nodes, r.now)
	if why == "" {
		return true, "", nil
	}
	log("NodeLost", fmt.Sprintf("node %s: %s: force-deleting pod %s", n.Name, why, p.Metadata.Name))
	if err := c.ForceDelete(nsPath(lab.Metadata.Namespace) + "/pods/" + p.Metadata.Name); err != nil {
		return true, "", err
	}
	return false, p.Spec.NodeName, nil
}

// createNode makes a missing pod, or says why it waits: a pinned node
// whose Kubernetes node is away waits for it (one WaitingForNode event),
// an unpinned one lost with its node is rescheduled elsewhere (the
// scheduler avoids nodes tainted not-ready or unreachable).
func (c *Client) createNode(lab *Lab, n LabNode, lostFrom string, r *round, log func(reason, msg string)) (NodeStatus, error) {
	name := PodName(lab.Metadata.Name, n.Name)
	st := NodeStatus{Name: n.Name, Pod: name, Phase: "Pending"}
	prev := prevPhase(lab, n.Name)
	if n.K8sNode != "" && !usable(n.K8sNode, r.nodes) {
		st.K8sNode, st.Phase = n.K8sNode, PhaseWaitingForNode
		if prev != PhaseWaitingForNode {
			log(PhaseWaitingForNode, fmt.Sprintf("node %s: pinned to Kubernetes node %s, which is not Ready: waiting for it", n.Name, n.K8sNode))
		}
		return st, nil
	}
	switch {
	case lostFrom != "":
		log("Rescheduled", fmt.Sprintf("node %s: creating pod %s again away from %s", n.Name, name, lostFrom))
	case prev == PhaseWaitingForNode:
		log("CreatingPod", fmt.Sprintf("node %s: Kubernetes node %s is back, creating pod %s", n.Name, n.K8sNode, name))
	default:
		log("CreatingPod", fmt.Sprintf("node %s: creating pod %s", n.Name, name))
	}
	if err := c.Create(nsPath(lab.Metadata.Namespace)+"/pods", labPod(lab, n)); err != nil {
		return st, fmt.Errorf("lab %s: node %s: %w", lab.Metadata.Name, n.Name, err)
	}
	return st, nil
}
