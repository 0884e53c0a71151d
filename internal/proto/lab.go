package proto

import "encoding/xml"

// Counters count frames and bytes. For a port, rx is what the port sent
// into the switch and tx what the switch delivered to it; drops are frames
// lost at that port (full queue, oversize, impairment). For a lan, rx
// counts frames that entered the lan and tx deliveries out of it.
type Counters struct {
	RxFrames uint64 `xml:"rx_frames,attr" json:"rx_frames"`
	RxBytes  uint64 `xml:"rx_bytes,attr" json:"rx_bytes"`
	TxFrames uint64 `xml:"tx_frames,attr" json:"tx_frames"`
	TxBytes  uint64 `xml:"tx_bytes,attr" json:"tx_bytes"`
	Drops    uint64 `xml:"drops,attr" json:"drops"`
}

// Lab is the running lab as `list` returns it; `ctrl list --json` prints
// it with the JSON names (DESIGN section 3).
type Lab struct {
	XMLName xml.Name `xml:"lab" json:"-"`
	Network string   `xml:"network,attr" json:"network"`
	VMs     []VM     `xml:"vm" json:"vms"`
	Lans    []Lan    `xml:"lan" json:"lans"`
	Tux     []Tux    `xml:"tux" json:"tux"`
	Ports   []Port   `xml:"port" json:"ports"`
	// Mgmt is the management network, nil when off.
	Mgmt *Mgmt `xml:"mgmt,omitempty" json:"mgmt,omitempty"`
}

// Mgmt is the management network: its prefix, the host's address on it
// and the host interface the switch made.
type Mgmt struct {
	Net    string `xml:"net,attr" json:"net"`
	Host   string `xml:"host,attr" json:"host"`
	Ifname string `xml:"ifname,attr" json:"ifname"`
}

// VM is one machine.
type VM struct {
	Name   string `xml:"name,attr" json:"name"`
	Type   string `xml:"type,attr" json:"type"`   // kvm, uml or cnt
	State  string `xml:"state,attr" json:"state"` // booting, running, stopped, crashed
	Accel  string `xml:"accel,attr,omitempty" json:"accel"`
	Pid    int    `xml:"pid,attr" json:"pid"`
	Mem    int    `xml:"mem,attr" json:"mem"`
	CPU    int    `xml:"cpu,attr" json:"cpu"`
	Rootfs string `xml:"rootfs,attr" json:"rootfs"`
	Kernel string `xml:"kernel,attr,omitempty" json:"kernel,omitempty"`
	// Transport is the UML eth transport (bess or daemon).
	Transport string `xml:"transport,attr,omitempty" json:"transport,omitempty"`
	// Mgmt is mgmt0's "ADDR/LEN" on the management network.
	Mgmt string `xml:"mgmt,attr,omitempty" json:"mgmt,omitempty"`
	// MgmtIP is the address add_vm named (--mgmt-ip); "" when derived
	// from the name, so a saved lab (and the journal) keeps what was given.
	MgmtIP string `xml:"mgmt_ip,attr,omitempty" json:"mgmt_ip,omitempty"`
	// Demo is the demo folder it was added with (its CD's trees).
	Demo string `xml:"demo,attr,omitempty" json:"demo,omitempty"`
	Eths []Eth  `xml:"eth" json:"eths"`
	X    *int   `xml:"x,attr,omitempty" json:"x,omitempty"`
	Y    *int   `xml:"y,attr,omitempty" json:"y,omitempty"`
}

// Eth is one interface of a VM: its port name (VM:ethN) and lans.
type Eth struct {
	Port   string   `xml:"port,attr" json:"port"`
	Lans   []string `xml:"lan" json:"lans"`
	Impair string   `xml:"impair,attr,omitempty" json:"impair,omitempty"`
	Link   string   `xml:"link,attr,omitempty" json:"link,omitempty"` // "down" while its cable is pulled
}

// Lan is one lan and the ports on it.
type Lan struct {
	Name     string   `xml:"name,attr" json:"name"`
	Ports    []string `xml:"member" json:"ports"`
	Counters Counters `xml:"counters" json:"counters"`
	X        *int     `xml:"x,attr,omitempty" json:"x,omitempty"`
	Y        *int     `xml:"y,attr,omitempty" json:"y,omitempty"`
}

// Tux is one helper endpoint to the outside.
type Tux struct {
	Name     string            `xml:"name,attr" json:"name"`
	Kind     string            `xml:"kind,attr" json:"kind"` // slirp, tap, t2t, vxlan
	State    string            `xml:"state,attr" json:"state"`
	Pid      int               `xml:"pid,attr" json:"pid"`
	Restarts int               `xml:"restarts,attr" json:"restarts"`
	Lans     []string          `xml:"lan" json:"lans"`
	Options  []Option          `xml:"option" json:"-"`
	Opts     map[string]string `xml:"-" json:"options,omitempty"`
	Forwards []Forward         `xml:"forward" json:"forwards,omitempty"`
	Counters Counters          `xml:"counters" json:"counters"`
	Impair   string            `xml:"impair,attr,omitempty" json:"impair,omitempty"`
	Link     string            `xml:"link,attr,omitempty" json:"link,omitempty"`
	X        *int              `xml:"x,attr,omitempty" json:"x,omitempty"`
	Y        *int              `xml:"y,attr,omitempty" json:"y,omitempty"`
}

// Option is one name=value setting of a tux (ifname, peer, remote, vni...).
type Option struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Forward is one slirp port forward.
type Forward struct {
	Proto string `xml:"proto,attr" json:"proto"`
	Host  string `xml:"host,attr" json:"host"`
	Guest string `xml:"guest,attr" json:"guest"`
}

// Port is one switch port: a VM eth, a tux, or a raw port.
type Port struct {
	Name      string   `xml:"name,attr" json:"name"`
	Kind      string   `xml:"kind,attr" json:"kind"` // stream, dgram, bess, daemon, vde, tux, tap (a container node's eth), vtap (a QEMU guest's)
	Socket    string   `xml:"socket,attr" json:"socket"`
	Connected bool     `xml:"connected,attr" json:"connected"`
	Lans      []string `xml:"lan" json:"lans"`
	Counters  Counters `xml:"counters" json:"counters"`
	Impair    string   `xml:"impair,attr,omitempty" json:"impair,omitempty"`
	Link      string   `xml:"link,attr,omitempty" json:"link,omitempty"`
}

// Normalize makes every nil list empty so JSON shows [] rather than null,
// and fills Opts from Options.
func (l *Lab) Normalize() {
	if l.VMs == nil {
		l.VMs = []VM{}
	}
	if l.Lans == nil {
		l.Lans = []Lan{}
	}
	if l.Tux == nil {
		l.Tux = []Tux{}
	}
	if l.Ports == nil {
		l.Ports = []Port{}
	}
	for i := range l.VMs {
		if l.VMs[i].Eths == nil {
			l.VMs[i].Eths = []Eth{}
		}
		for j := range l.VMs[i].Eths {
			if l.VMs[i].Eths[j].Lans == nil {
				l.VMs[i].Eths[j].Lans = []string{}
			}
		}
	}
	for i := range l.Lans {
		if l.Lans[i].Ports == nil {
			l.Lans[i].Ports = []string{}
		}
	}
	for i := range l.Tux {
		if l.Tux[i].Lans == nil {
			l.Tux[i].Lans = []string{}
		}
		if len(l.Tux[i].Options) > 0 {
			l.Tux[i].Opts = map[string]string{}
			for _, o := range l.Tux[i].Options {
				l.Tux[i].Opts[o.Name] = o.Value
			}
		}
	}
	for i := range l.Ports {
		if l.Ports[i].Lans == nil {
			l.Ports[i].Lans = []string{}
		}
	}
}
