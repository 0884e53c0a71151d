package kube

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// DeployOptions are deploy's and apply's inputs.
type DeployOptions struct {
	Path      string // what fconf load takes
	Name      string
	Namespace string
	Registry  string
	Pins      map[string]string // lab node -> Kubernetes node (--pin; wins over <k8s_node>)
	Log       io.Writer
}

// spec reads the file: the Lab spec and each node's demo files.
func (o DeployOptions) spec() (LabSpec, map[string]nodeFiles, error) {
	if err := CheckLabName(o.Name); err != nil {
		return LabSpec{}, nil, err
	}
	d, err := topology.Load(o.Path)
	if err != nil {
		return LabSpec{}, nil, err
	}
	spec, err := SpecFromTopology(d.Topology, o.Registry)
	if err != nil {
		return spec, nil, err
	}
	for node, k8s := range o.Pins {
		found := false
		for i := range spec.Nodes {
			if spec.Nodes[i].Name == node {
				spec.Nodes[i].K8sNode, found = k8s, true
			}
		}
		if !found {
			return spec, nil, fmt.Errorf("--pin %s=%s: %s has no node %s", node, k8s, o.Path, node)
		}
	}
	files, err := demoConfigs(d.Dir, spec)
	return spec, files, err
}

// Deploy installs what labs need (CRD, service account and role, switch
// DaemonSet, controller Deployment: each left as it is when present) and
// creates the Lab. The controller then makes the pods.
func (c *Client) Deploy(o DeployOptions) error {
	spec, files, err := o.spec()
	if err != nil {
		return err
	}
	ns := o.Namespace
	if _, err := c.GetLab(ns, o.Name); err == nil {
		return fmt.Errorf("lab %s already exists in namespace %s: change it with `cloonix kube apply`, or destroy it first", o.Name, ns)
	}
	if err := c.Create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd()); err != nil {
		return err
	}
	for _, r := range rbac(ns) {
		if err := c.Create(r.path, r.obj); err != nil {
			return err
		}
	}
	img := ImageRef(o.Registry, SwitchImageName)
	if err := c.Create("/apis/apps/v1/namespaces/"+ns+"/daemonsets", switchDaemonSet(ns, img, c.Server)); err != nil {
		return err
	}
	if err := c.Create("/apis/apps/v1/namespaces/"+ns+"/deployments", controllerDeployment(ns, img, c.Server)); err != nil {
		return err
	}
	lab := Lab{APIVersion: Group + "/" + Version, Kind: "Lab",
		Metadata: Meta{Name: o.Name, Namespace: ns}, Spec: spec}
	// The CRD takes a moment to be served after it is created.
	var last error
	for i := 0; i < 60; i++ {
		if last = c.Do("POST", labsPath(ns), "", lab, &lab); last == nil || !IsNotFound(last) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last != nil {
		return last
	}
	// After the Lab, which owns them (its uid): a pod made before its
	// ConfigMap waits for it.
	if err := c.putConfigMaps(&lab, files); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "lab %s: %d nodes, %d lans, in namespace %s\n", o.Name, len(spec.Nodes), len(spec.Lans()), ns)
	return nil
}

// Apply replaces a deployed lab's spec by the file's: the controller adds
// and removes pods, the switches attach and detach eths; pods whose node
// did not change keep running.
func (c *Client) Apply(o DeployOptions) error {
	spec, files, err := o.spec()
	if err != nil {
		return err
	}
	cur, err := c.GetLab(o.Namespace, o.Name)
	if err != nil {
		return err
	}
	keepPins(&spec, cur.Spec, o.Pins)
	// ConfigMaps first, so that new nodes' pods find theirs; running pods
	// keep the demo files they started with.
	next := *cur
	next.Spec = spec
	if err := c.putConfigMaps(&next, files); err != nil {
		return err
	}
	if err := c.MergePatch(labsPath(o.Namespace)+"/"+url.PathEscape(o.Name), map[string]any{"spec": spec}); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "lab %s: applied %s (%d nodes, %d lans)\n", o.Name, o.Path, len(spec.Nodes), len(spec.Lans()))
	return nil
}

// keepPins: a node keeps the Kubernetes node it was pinned to at deploy
// unless this apply pins it anew (--pin, or <k8s_node> in the file).
func keepPins(spec *LabSpec, cur LabSpec, pins map[string]string) {
	was := map[string]string{}
	for _, n := range cur.Nodes {
		was[n.Name] = n.K8sNode
	}
	for i, n := range spec.Nodes {
		if _, ok := pins[n.Name]; !ok && n.K8sNode == "" {
			spec.Nodes[i].K8sNode = was[n.Name]
		}
	}
}

// Destroy deletes the lab, waits for its pods to go, and when it was the
// namespace's last lab removes the switch, the controller and their
// account; when it was the cluster's last, the CRD and role too.
func (c *Client) Destroy(ns, name string, log io.Writer) error {
	if _, err := c.GetLab(ns, name); err != nil {
		return err
	}
	if err := c.Delete(labsPath(ns) + "/" + url.PathEscape(name)); err != nil {
		return err
	}
	if err := c.waitGone(ns, LabelLab+"="+name); err != nil {
		return err
	}
	fmt.Fprintf(log, "lab %s destroyed\n", name)
	if labs, err := c.ListLabs(ns); err != nil || len(labs) > 0 {
		return err
	}
	for _, p := range []string{
		"/apis/apps/v1/namespaces/" + ns + "/daemonsets/cloonix-switch",
		"/apis/apps/v1/namespaces/" + ns + "/deployments/cloonix-controller",
		"/api/v1/namespaces/" + ns + "/serviceaccounts/" + SwitchAccount,
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cloonix-" + ns,
	} {
		if err := c.Delete(p); err != nil {
			return err
		}
	}
	if err := c.waitGone(ns, LabelRole); err != nil {
		return err
	}
	var all labList
	if err := c.Get(LabsPath+"/labs", &all); err != nil || len(all.Items) > 0 {
		return err
	}
	for _, p := range []string{
		"/apis/rbac.authorization.k8s.io/v1/clusterroles/cloonix",
		"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/labs." + Group,
	} {
		if err := c.Delete(p); err != nil {
			return err
		}
	}
	// The CRD goes once the API has cleaned up its (now no) objects.
	crdPath := "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/labs." + Group
	for i := 0; i < 120; i++ {
		if err := c.Get(crdPath, nil); IsNotFound(err) {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("the Lab CRD is still there after a minute (kubectl describe crd labs.%s)", Group)
}

// ListedVM is `ctrl list --json`'s vm plus where it runs.
type ListedVM struct {
	proto.VM
	Pod     string `json:"pod"`
	K8sNode string `json:"k8s_node"`
}

// Listing is `kube list --json`: the `ctrl list --json` shape.
type Listing struct {
	Network string      `json:"network"`
	VMs     []ListedVM  `json:"vms"`
	Lans    []proto.Lan `json:"lans"`
}

// List describes a deployed lab: its nodes (pod state, Kubernetes node),
// eths and lans.
func (c *Client) List(ns, name string) (*Listing, error) {
	lab, err := c.GetLab(ns, name)
	if err != nil {
		return nil, err
	}
	pods, err := c.ListPods(ns, map[string]string{LabelLab: name})
	if err != nil {
		return nil, err
	}
	byNode := map[string]Pod{}
	for _, p := range pods {
		byNode[p.Metadata.Labels[LabelNode]] = p
	}
	out := &Listing{Network: name, VMs: []ListedVM{}, Lans: []proto.Lan{}}
	members := map[string][]string{}
	for _, n := range lab.Spec.Nodes {
		p, k8sNode := byNode[n.Name], byNode[n.Name].Spec.NodeName
		state := "pending"
		switch {
		case p.Metadata.Name == "" && prevPhase(lab, n.Name) == PhaseWaitingForNode:
			state, k8sNode = "waiting", n.K8sNode // for its pinned node to be back
		case p.Metadata.DeletionTimestamp != nil:
			state = "stopping"
		case p.Status.Phase == "Running":
			state = "running"
		case p.Status.Phase == "Failed":
			state = "crashed"
		}
		vm := ListedVM{VM: proto.VM{Name: n.Name, Type: "cnt", State: state, Rootfs: n.Image, Eths: []proto.Eth{}},
			Pod: p.Metadata.Name, K8sNode: k8sNode}
		for i, e := range n.Eths {
			port := topology.EthPort(n.Name, i)
			vm.Eths = append(vm.Eths, proto.Eth{Port: port, Lans: append([]string{}, e.Lans...)})
			for _, l := range e.Lans {
				members[l] = append(members[l], port)
			}
		}
		out.VMs = append(out.VMs, vm)
	}
	for _, l := range lab.Spec.Lans() {
		sort.Strings(members[l])
		out.Lans = append(out.Lans, proto.Lan{Name: l, Ports: members[l]})
	}
	return out, nil
}

// PrintList writes a listing as a table, or as JSON.
func PrintList(w io.Writer, l *Listing, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(l)
	}
	fmt.Fprintf(w, "lab %s\n", l.Network)
	for _, v := range l.VMs {
		fmt.Fprintf(w, "  %-12s %-9s pod %-24s on %s\n", v.Name, v.State, v.Pod, v.K8sNode)
		for _, e := range v.Eths {
			fmt.Fprintf(w, "    %-14s %v\n", e.Port, e.Lans)
		}
	}
	return nil
}

// waitGone waits (up to 2 minutes) until no pod of ns matches selector.
func (c *Client) waitGone(ns, selector string) error {
	for i := 0; ; i++ {
		var l podList
		if err := c.Get(nsPath(ns)+"/pods?labelSelector="+url.QueryEscape(selector), &l); err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return nil
		}
		if i == 240 {
			return fmt.Errorf("%d pods still there after 2 minutes (kubectl get pods -n %s -l %s)", len(l.Items), ns, selector)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
