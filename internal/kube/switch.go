package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloonix/internal/proto"
)

// Switch is the DaemonSet's agent on one Kubernetes node: it drives that
// node's cloonix switch so that the lab pods there get their eths (a tap
// tux each, moved into the pod's network namespace as ethN with the
// node's MAC) on the lab's lans, and each lan with members on other nodes
// gets a VXLAN tux to those nodes (VNI from the Lab's status).
type Switch struct {
	K    *Client
	NS   string
	Node string
	SW   SwitchConn
	Net  Plumber
	Log  io.Writer
}

// SwitchConn is the part of the switch's control client the agent uses.
type SwitchConn interface {
	Do(req proto.Request, reply any) error
	List() (*proto.Lab, error)
}

// Plumber moves a tap into a pod and names it there (netlink; a fake in
// unit tests).
type Plumber interface {
	// PodPID finds a process of the pod with this UID (0: none yet).
	PodPID(uid string) int
	// Move puts host interface ifname into pid's network namespace as
	// name with mac, up.
	Move(ifname string, pid int, name, mac string) error
}

type k8sNode struct {
	Metadata Meta `json:"metadata"`
	Status   struct {
		Conditions []struct {
			Type               string `json:"type"`
			Status             string `json:"status"`
			LastTransitionTime string `json:"lastTransitionTime"`
		} `json:"conditions"`
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

// nodeIPs maps each Kubernetes node to its InternalIP.
func (c *Client) nodeIPs() (map[string]string, error) {
	var l struct {
		Items []k8sNode `json:"items"`
	}
	if err := c.Get("/api/v1/nodes", &l); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range l.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				out[n.Metadata.Name] = a.Address
			}
		}
	}
	return out, nil
}

// tapName is the tux (and host interface, before it moves) of a pod's
// eth: unique per pod instance, so a recreated pod gets new ones.
func tapName(uid string, eth int) string {
	h := sha256.Sum256([]byte(uid + "/" + strconv.Itoa(eth)))
	return "k" + hex.EncodeToString(h[:])[:10]
}

func isOurTux(name string) bool {
	return len(name) == 11 && name[0] == 'k' || strings.HasPrefix(name, "vx")
}

// LanName is a lab's lan in the node's switch (labs share the switch).
func LanName(lab, lan string) string { return lab + "." + lan }

type wantTux struct {
	kind, pod, mac string
	uid            string
	eth            int
	lans           []string
	opts           map[string]string
}

// desired computes every tux this node's switch should have.
func (s *Switch) desired() (map[string]*wantTux, error) {
	labs, err := s.K.ListLabs(s.NS)
	if err != nil {
		return nil, err
	}
	var pods podList
	if err := s.K.Get(nsPath(s.NS)+"/pods?labelSelector="+url.QueryEscape(LabelLab), &pods); err != nil {
		return nil, err
	}
	ips, err := s.K.nodeIPs()
	if err != nil {
		return nil, err
	}
	want := map[string]*wantTux{}
	for _, lab := range labs {
		if lab.Metadata.DeletionTimestamp != nil {
			continue
		}
		nodes := map[string]LabNode{}
		for _, n := range lab.Spec.Nodes {
			nodes[n.Name] = n
		}
		local := map[string]bool{}             // lans with a member here
		remote := map[string]map[string]bool{} // lan -> IPs of other nodes with members
		for _, p := range pods.Items {
			n, ok := nodes[p.Metadata.Labels[LabelNode]]
			if !ok || p.Metadata.Labels[LabelLab] != lab.Metadata.Name || p.Status.Phase != "Running" || p.Metadata.DeletionTimestamp != nil {
				continue
			}
			for i, e := range n.Eths {
				for _, l := range e.Lans {
					if p.Spec.NodeName == s.Node {
						local[l] = true
					} else if ip := ips[p.Spec.NodeName]; ip != "" {
						if remote[l] == nil {
							remote[l] = map[string]bool{}
						}
						remote[l][ip] = true
					}
				}
				if p.Spec.NodeName != s.Node {
					continue
				}
				var lans []string
				for _, l := range e.Lans {
					lans = append(lans, LanName(lab.Metadata.Name, l))
				}
				want[tapName(p.Metadata.UID, i)] = &wantTux{kind: "tap", pod: p.Metadata.Name, uid: p.Metadata.UID,
					eth: i, mac: e.MAC, lans: lans, opts: map[string]string{"ifname": tapName(p.Metadata.UID, i)}}
			}
		}
		for l := range local {
			vni, ok := lab.Status.VNIs[l]
			if !ok || len(remote[l]) == 0 {
				continue
			}
			var peers []string
			for ip := range remote[l] {
				peers = append(peers, ip)
			}
			sort.Strings(peers)
			opts := map[string]string{"remote": strings.Join(peers, ","), "vni": strconv.Itoa(vni),
				"port": strconv.Itoa(VXLANPortBase + vni)}
			// VXLAN is taken on this node's own address only.
			if ip := ips[s.Node]; ip != "" {
				opts["local"] = ip
			} else {
				opts["listen-any"] = "true"
			}
			want["vx"+strconv.Itoa(vni)] = &wantTux{kind: "vxlan", lans: []string{LanName(lab.Metadata.Name, l)}, opts: opts}
		}
	}
	return want, nil
}

// Sync brings the switch to what the cluster wants; errors of one tux do
// not stop the others (they are logged and tried again next round).
func (s *Switch) Sync() error {
	want, err := s.desired()
	if err != nil {
		return err
	}
	cur, err := s.SW.List()
	if err != nil {
		return err
	}
	have := map[string]proto.Tux{}
	for _, t := range cur.Tux {
		if !isOurTux(t.Name) {
			continue
		}
		w := want[t.Name]
		if w == nil || (w.kind == "vxlan" && t.Opts["remote"] != w.opts["remote"]) {
			fmt.Fprintf(s.Log, "switch: removing tux %s\n", t.Name)
			if err := s.SW.Do(proto.DelTux{Name: t.Name}, nil); err != nil {
				fmt.Fprintf(s.Log, "switch: del tux %s: %v\n", t.Name, err)
			}
			continue
		}
		have[t.Name] = t
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.syncTux(name, want[name], have); err != nil {
			fmt.Fprintf(s.Log, "switch: %s: %v\n", name, err)
		}
	}
	return nil
}

func (s *Switch) syncTux(name string, w *wantTux, have map[string]proto.Tux) error {
	t, ok := have[name]
	if !ok {
		pid := 0
		if w.kind == "tap" {
			if pid = s.Net.PodPID(w.uid); pid == 0 {
				return fmt.Errorf("pod %s: no process yet", w.pod)
			}
		}
		req := proto.AddTux{Name: name, Kind: w.kind}
		for _, k := range sortedKeys(w.opts) {
			req.Option(k, w.opts[k])
		}
		fmt.Fprintf(s.Log, "switch: adding %s tux %s %v\n", w.kind, name, w.opts)
		if err := s.SW.Do(req, nil); err != nil {
			return err
		}
		if w.kind == "tap" {
			if err := s.Net.Move(name, pid, "eth"+strconv.Itoa(w.eth), w.mac); err != nil {
				_ = s.SW.Do(proto.DelTux{Name: name}, nil)
				return fmt.Errorf("pod %s eth%d: %v", w.pod, w.eth, err)
			}
			fmt.Fprintf(s.Log, "switch: pod %s: eth%d %s is tux %s\n", w.pod, w.eth, w.mac, name)
		}
	}
	wantLan := map[string]bool{}
	for _, l := range w.lans {
		wantLan[l] = true
	}
	for _, l := range t.Lans {
		if !wantLan[l] {
			if err := s.SW.Do(proto.Detach{Port: name, Lan: l}, nil); err != nil {
				return err
			}
		}
		delete(wantLan, l)
	}
	for _, l := range sortedSet(wantLan) {
		if err := s.SW.Do(proto.Attach{Port: name, Lan: l}, nil); err != nil {
			return fmt.Errorf("attach to %s: %v", l, err)
		}
	}
	return nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Run syncs every interval until stop.
func (s *Switch) Run(every time.Duration, stop <-chan struct{}) {
	for {
		if err := s.Sync(); err != nil {
			fmt.Fprintf(s.Log, "switch: %v\n", err)
		}
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
	}
}
