// Package labfmt reads labs written for other tools (Kathará lab folders,
// containerlab topologies) and turns them into cloonix's own model: a
// topology (internal/topology) plus a demo folder (files_to_add_in_VM
// trees, /etc/rc.d scripts). `fconf load` of a foreign lab writes that
// demo folder and loads it as any native one, and `fconf convert` writes
// the same folder where the user asks, so both share one path.
//
// One file per format behind the small format interface; adding a format
// is a file and a line in formats.
package labfmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cloonix/internal/topology"
)

// format is one foreign lab format.
type format interface {
	// name is how messages and --plan call the format.
	name() string
	// detect returns the file to parse when path holds a lab of this
	// format ("" when it does not).
	detect(path string, st os.FileInfo) string
	// parse reads the lab; file names in errors are as given.
	parse(file string, opt Options) (*Lab, error)
}

var formats = []format{kathara{}, clab{}}

// Options are the user's choices for a conversion.
type Options struct {
	// As is the node type: "uml", "kvm" or "cnt" ("" for DefaultAs()).
	As string
	// Images maps a foreign image (exactly as written, or without its
	// :tag) to a cloonix rootfs; it wins over DefaultImages.
	Images map[string]string
}

// Lab is a foreign lab in cloonix's terms.
type Lab struct {
	Format   string      // "kathara" or "containerlab"
	Src      string      // the file read (lab.conf or the .clab.yml)
	Name     string      // the lab's name, "" when it has none
	Meta     [][2]string // descriptive fields (Kathará LAB_*), in file order
	Nodes    []*Node
	Warnings []string
}

// Node is one machine of a foreign lab.
type Node struct {
	Name    string
	Image   string // as the lab wrote it
	Rootfs  string // the cloonix image it maps to
	Mem     int    // MB, 0 for the switch's default
	CPU     int
	Eths    map[int]string // eth index -> lan; "" for an eth on no lan
	NatEth  int            // the eth on the nat slirp, -1 for none
	NatAddr string         // its static address (assignNat)
	Ports   []Port         // host ports forwarded to this node (through NatEth)
	After   []string       // nodes that must be ready before this one boots
	Trees   []string       // host folders copied into the node's / (in order)
	Files   []File         // single files copied in (after Trees)
	Boot    string         // shell script run once at every boot, after the files are in place
	Line    int            // where the node is first named
}

// Port is one forwarded port: the host's HostPort to the node's GuestPort.
type Port struct {
	Proto               string // tcp or udp
	HostPort, GuestPort int
}

// File is one file put into a node: from the host (Src) or written (Data).
type File struct {
	Guest string // absolute path in the node
	Src   string // host path (a file or a folder), "" when Data is used
	Data  []byte
	Mode  os.FileMode
}

// NatLan is the lan that carries every node's nat eth, with the switch's
// slirp `nat` on it.
const NatLan = "nat_lan"

// NatTux is the switch's default slirp.
const NatTux = "nat"

// natBase is the first host number of the static nat addresses: above
// the slirp's DHCP leases (10.0.2.15 and up) so both can share the lan.
const natBase = 100

// Detect tells whether path is a foreign lab, and which file describes it.
// A native topology file or demo folder gives ok false.
func Detect(path string) (format string, file string, ok bool) {
	st, err := os.Stat(path)
	if err != nil {
		return "", "", false
	}
	for _, f := range formats {
		if file := f.detect(path, st); file != "" {
			return f.name(), file, true
		}
	}
	return "", "", false
}

// Read parses the foreign lab at path (a folder or file that Detect
// accepts) and maps its images. Nothing is written.
func Read(path string, opt Options) (*Lab, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	switch opt.As {
	case "":
		opt.As = DefaultAs()
	case "uml", "kvm", "cnt":
	default:
		return nil, fmt.Errorf("--as %q: use cnt, uml or kvm", opt.As)
	}
	for _, f := range formats {
		if file := f.detect(path, st); file != "" {
			lab, err := f.parse(file, opt)
			if err != nil {
				return nil, err
			}
			lab.Format = f.name()
			lab.memFloor()
			return lab, nil
		}
	}
	return nil, fmt.Errorf("%s: neither a Kathará lab (a folder holding lab.conf) nor a containerlab topology (*.clab.yml)", path)
}

// minMem is the least memory (MB) a rootfs boots with; containers run
// in far less than a UML or QEMU guest needs.
var minMem = map[string]int{"debian-frr": 192}

// memFloor raises memory sizes the node's rootfs cannot boot with.
func (l *Lab) memFloor() {
	for _, n := range l.Nodes {
		if m := minMem[n.Rootfs]; n.Mem > 0 && n.Mem < m {
			l.Warnings = append(l.Warnings, fmt.Sprintf("%s: node %s: %d MB is too little for %s; given %d MB", l.Src, n.Name, n.Mem, n.Rootfs, m))
			n.Mem = m
		}
	}
}

// errList gathers a file's errors so the user sees them all at once.
type errList []string

func (e *errList) add(format string, a ...any) { *e = append(*e, fmt.Sprintf(format, a...)) }

func (e errList) err() error {
	if len(e) == 0 {
		return nil
	}
	const most = 20
	if len(e) > most {
		e = append(e[:most:most], fmt.Sprintf("... and %d more", len(e)-most))
	}
	return errors.New(strings.Join(e, "\n"))
}

// Node returns the named node or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Plan describes the lab for `fconf load --plan`: its format, name,
// metadata and what did not map.
func (l *Lab) Plan() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s lab %s", l.Format, l.Src)
	if l.Name != "" {
		fmt.Fprintf(&b, " (%s)", l.Name)
	}
	b.WriteString("\n")
	for _, m := range l.Meta {
		fmt.Fprintf(&b, "  %s: %s\n", m[0], m[1])
	}
	for _, n := range l.Nodes {
		fmt.Fprintf(&b, "  node %s: image %s -> rootfs %s", n.Name, orDash(n.Image), n.Rootfs)
		if len(n.After) > 0 {
			fmt.Fprintf(&b, ", boots after %s", strings.Join(n.After, " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// bootOrder sorts nodes so that each comes after those it depends on
// (stable otherwise); a cycle is an error naming it.
func bootOrder(nodes []*Node, where string) ([]*Node, error) {
	byName := map[string]*Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	state := map[string]int{} // 1 visiting, 2 done
	var out []*Node
	var visit func(n *Node, path []string) error
	visit = func(n *Node, path []string) error {
		switch state[n.Name] {
		case 1:
			return fmt.Errorf("%s: boot dependencies form a cycle: %s -> %s", where, strings.Join(path, " -> "), n.Name)
		case 2:
			return nil
		}
		state[n.Name] = 1
		deps := append([]string(nil), n.After...)
		sort.Strings(deps)
		for _, d := range deps {
			if m := byName[d]; m != nil {
				if err := visit(m, append(path, n.Name)); err != nil {
					return err
				}
			}
		}
		state[n.Name] = 2
		out = append(out, n)
		return nil
	}
	for _, n := range nodes {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// relTo makes p absolute against the folder of file.
func relTo(file, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

// Topology returns the native topology of the lab as type as.
func (l *Lab) Topology(as string) *topology.Topology {
	if as == "" {
		as = DefaultAs()
	}
	t := &topology.Topology{File: l.Src, ConfigPath: "."}
	var nat *topology.Tux
	for _, n := range l.Nodes {
		v := topology.VM{Name: n.Name, Type: as, Mem: n.Mem, Rootfs: n.Rootfs, Line: n.Line, After: n.After}
		if as != "uml" {
			v.CPU = n.CPU
		}
		max := n.NatEth
		for i := range n.Eths {
			if i > max {
				max = i
			}
		}
		for i := 0; i <= max; i++ {
			var e topology.Eth
			if lan := n.Eths[i]; lan != "" {
				e.Lans = []string{lan}
			}
			if i == n.NatEth {
				e.Lans = []string{NatLan}
			}
			v.Eths = append(v.Eths, e)
		}
		if n.NatEth >= 0 {
			if nat == nil {
				t.Tux = append(t.Tux, topology.Tux{Name: NatTux, Kind: "slirp", Lans: []string{NatLan}})
				nat = &t.Tux[len(t.Tux)-1]
			}
			for _, p := range n.Ports {
				nat.Forwards = append(nat.Forwards, topology.Forward{
					Proto: p.Proto,
					Host:  fmt.Sprintf("127.0.0.1:%d", p.HostPort),
					Guest: fmt.Sprintf("%s:%d", n.NatAddr, p.GuestPort),
				})
			}
		}
		t.VMs = append(t.VMs, v)
	}
	return t
}

// assignNat gives each node with a nat eth its static address, in the
// order the lab names them.
func (l *Lab) assignNat(errs *errList) {
	k := 0
	for _, n := range l.Nodes {
		if n.NatEth < 0 {
			continue
		}
		if natBase+k > 254 {
			errs.add("%s: more than %d nodes on the nat; cloonix gives them 10.0.2.%d..254", l.Src, 255-natBase, natBase)
			return
		}
		n.NatAddr = fmt.Sprintf("10.0.2.%d", natBase+k)
		k++
	}
}

// natScript configures the node's nat eth as the slirp expects: a static
// address (so forwards know it), the slirp as gateway and DNS.
func natScript(n *Node) string {
	if n.NatEth < 0 {
		return ""
	}
	eth := fmt.Sprintf("eth%d", n.NatEth)
	return fmt.Sprintf("ip link set %s up\nip addr replace %s/24 dev %s\nip route replace default via 10.0.2.2 dev %s\necho nameserver 10.0.2.3 > /etc/resolv.conf\n",
		eth, n.NatAddr, eth, eth)
}
