// Package topology reads, checks, writes and compares topology files and
// demo folders (DESIGN section 4), the seed's format:
//
//	<TOPOLOGY>
//	  <config_path> . </config_path>
//	  <VM> <name> ROUTER1 </name> <type> KVM </type> <mem> 128 </mem> <rootfs> busybox </rootfs>
//	       <eth> <vlan > lan_two </vlan> </eth> <eth> <vlan> lan_one </vlan> <vlan> lan_x </vlan> </eth>
//	  </VM>
//	  <TUX> <name> nat </name> <type> slirp </type> <vlan> lan_one </vlan> </TUX>
//	</TOPOLOGY>
//
// Values are trimmed. Extensions (all optional): several <vlan> per <eth>
// or none, <cpu>, <kernel>, <transport> (UML eth transport), <impair> per
// <eth> or <TUX>, <after> (boot order) on <VM>, <x>/<y> layout positions on <VM>, <TUX> and <LAN>, a
// <LAN> element for a lan that exists on its own, and <TUX> options as
// child elements (<ifname>, <peer>, <remote>, <vni>, ...) plus <forward>.
//
// The package does no I/O on the switch: Parse and Check make a Topology,
// FromLab turns a running lab into one, Diff computes the Plan that brings
// a running lab to a Topology; cmd/cloonix applies it.
package topology

// Topology is one parsed and checked topology file.
type Topology struct {
	// File is the path given to Parse, used in messages.
	File string
	// ConfigPath is the seed's <config_path> (the demo folder, relative to
	// the file's directory); "" when absent.
	ConfigPath string
	VMs        []VM
	Tux        []Tux
	Lans       []Lan
}

// VM is one machine of the file. Zero values mean "the switch's default".
type VM struct {
	Name      string
	Type      string // "kvm", "uml" or "cnt" (lower case), "" for the default
	Mem       int    // MB
	CPU       int
	Rootfs    string
	Kernel    string
	Transport string   // UML eth transport: bess or daemon
	MgmtIP    string   // mgmt0's address on the management network ("": derived)
	After     []string // VMs of the file that must be ready before this one is added (<after>)
	// State is "stopped" for a guest kept stopped (ctrl stop vm); "" runs.
	State string
	// Disk is a disk image in the demo folder's disks/ (fconf save
	// --with-disks): the guest boots from it instead of Rootfs.
	Disk string
	// K8sNode pins the node to this Kubernetes node when the lab runs on
	// Kubernetes (cloonix kube deploy); a local lab ignores it.
	K8sNode string
	Eths    []Eth
	X, Y    *int
	Line    int // where <VM> starts, for messages
}

// Eth is one interface: ethN is the Nth <eth> of its VM.
type Eth struct {
	Lans   []string
	Impair string // the impairment spec as written (e.g. "delay=50ms loss=1%")
	Link   string // "down" for a cable pulled (ctrl link PORT down); "" up
	Line   int
}

// Tux is one endpoint to the outside (slirp, tap, t2t, vxlan).
type Tux struct {
	Name     string
	Kind     string
	Lans     []string
	Options  []Option // kind-specific settings, in file order
	Forwards []Forward
	Impair   string
	Link     string // "down" or ""
	X, Y     *int
	Line     int
}

// DisksDir is the folder of a demo holding its guests' disks.
const DisksDir = "disks"

// Option is one kind-specific tux setting, written as <name> value </name>.
type Option struct {
	Name, Value string
}

// Forward is one slirp port forward, written as
// <forward> tcp 127.0.0.1:2222 10.0.2.15:22 </forward>.
type Forward struct {
	Proto, Host, Guest string
}

// Lan is a lan named on its own: it exists even with nothing attached and
// may carry a layout position.
type Lan struct {
	Name string
	X, Y *int
	Line int
}

// AllLans returns every lan the topology names (eths, tux and <LAN>),
// sorted, each once.
func (t *Topology) AllLans() []string {
	set := map[string]bool{}
	for _, v := range t.VMs {
		for _, e := range v.Eths {
			for _, l := range e.Lans {
				set[l] = true
			}
		}
	}
	for _, x := range t.Tux {
		for _, l := range x.Lans {
			set[l] = true
		}
	}
	for _, l := range t.Lans {
		set[l.Name] = true
	}
	return sortedKeys(set)
}

// VM returns the named VM or nil.
func (t *Topology) VM(name string) *VM {
	for i := range t.VMs {
		if t.VMs[i].Name == name {
			return &t.VMs[i]
		}
	}
	return nil
}
