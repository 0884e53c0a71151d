package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/topology"
)

// The Lab custom resource (labs.cloonix.io/v1alpha1).
const (
	Group      = "cloonix.io"
	Version    = "v1alpha1"
	LabsPath   = "/apis/" + Group + "/" + Version
	LabelLab   = "cloonix.lab"
	LabelNode  = "cloonix.node"
	LabelRole  = "cloonix.role"
	AnnotEths  = "cloonix.io/eths"
	FieldOwner = "cloonix"
)

// Lab is the custom resource: the spec deploy writes, the status the
// controller keeps.
type Lab struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   Meta      `json:"metadata"`
	Spec       LabSpec   `json:"spec"`
	Status     LabStatus `json:"status,omitempty"`
}

// Meta is the part of ObjectMeta cloonix reads and writes.
type Meta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	DeletionTimestamp *string           `json:"deletionTimestamp,omitempty"`
	OwnerReferences   []map[string]any  `json:"ownerReferences,omitempty"`
}

// LabSpec is a lab's nodes and where their images come from.
type LabSpec struct {
	Nodes []LabNode `json:"nodes"`
}

// LabNode is one cnt node: a pod.
type LabNode struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	K8sNode string   `json:"k8sNode,omitempty"` // pinned to this Kubernetes node
	Eths    []LabEth `json:"eths,omitempty"`
}

// LabEth is ethN of a node: its MAC (machine.MAC, as a local node has)
// and its lans.
type LabEth struct {
	MAC  string   `json:"mac"`
	Lans []string `json:"lans,omitempty"`
}

// LabStatus is kept by the controller.
type LabStatus struct {
	Phase string         `json:"phase,omitempty"`
	VNIs  map[string]int `json:"vnis,omitempty"` // lan -> VXLAN network id
	Nodes []NodeStatus   `json:"nodes,omitempty"`
	Ready int            `json:"ready,omitempty"` // nodes whose pod runs
}

// NodeStatus is one lab node's pod as the controller last saw it.
type NodeStatus struct {
	Name    string `json:"name"`
	Pod     string `json:"pod"`
	K8sNode string `json:"k8sNode,omitempty"`
	Phase   string `json:"phase,omitempty"`
}

var dnsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// PodName is the pod of a lab node: a DNS label made of both names; a
// hash of the names is added when they had to be changed (upper case,
// other characters, length), so two nodes never share a pod.
func PodName(lab, node string) string {
	want := lab + "-" + node
	n := strings.Trim(dnsUnsafe.ReplaceAllString(strings.ToLower(want), "-"), "-")
	if n == want && len(n) <= 63 {
		return n
	}
	h := sha256.Sum256([]byte(lab + "/" + node))
	if len(n) > 50 {
		n = n[:50]
	}
	return n + "-" + hex.EncodeToString(h[:3])
}

var labName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// CheckLabName: a lab's name is a DNS label (it names the resource and
// prefixes its pods).
func CheckLabName(name string) error {
	if !labName.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1 to 40 lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// SpecFromTopology turns a parsed topology into a Lab spec. Only cnt nodes
// run on Kubernetes; tux and other kinds are refused with the reason.
func SpecFromTopology(t *topology.Topology, registry string) (LabSpec, error) {
	var spec LabSpec
	if len(t.Tux) > 0 {
		return spec, fmt.Errorf("%s: tux %s: a lab on Kubernetes has only cnt nodes (tux are not supported there yet)", t.File, t.Tux[0].Name)
	}
	for _, vm := range t.VMs {
		if vm.Type != "cnt" {
			typ := vm.Type
			if typ == "" {
				typ = "the default type"
			}
			return spec, fmt.Errorf("%s:%d: %s is %s: a lab on Kubernetes runs cnt nodes only (set <type> cnt </type>)", t.File, vm.Line, vm.Name, typ)
		}
		ref, err := cnt.ParseRef(vm.Rootfs)
		if err != nil {
			return spec, fmt.Errorf("%s:%d: %s: %v", t.File, vm.Line, vm.Name, err)
		}
		n := LabNode{Name: vm.Name, Image: ImageRef(registry, RootfsImageName(ref)), K8sNode: vm.K8sNode}
		for i, e := range vm.Eths {
			lans := append([]string(nil), e.Lans...)
			sort.Strings(lans)
			n.Eths = append(n.Eths, LabEth{MAC: machine.MAC(vm.Name, i), Lans: lans})
		}
		spec.Nodes = append(spec.Nodes, n)
	}
	return spec, nil
}

// Lans returns the lans of a spec, sorted, each once.
func (s LabSpec) Lans() []string {
	set := map[string]bool{}
	for _, n := range s.Nodes {
		for _, e := range n.Eths {
			for _, l := range e.Lans {
				set[l] = true
			}
		}
	}
	var out []string
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}
