package topology

import (
	"fmt"
	"sort"
	"strings"

	"cloonix/internal/proto"
)

// Op is the kind of one plan step.
type Op string

// Plan steps, each one control request (attach/detach of a VM's eths are
// separate steps so they apply live, without touching the guest).
const (
	AddLan     Op = "add lan"
	DelLan     Op = "del lan"
	AddVM      Op = "add vm"
	DelVM      Op = "del vm"
	AddTux     Op = "add tux"
	DelTux     Op = "del tux"
	Attach     Op = "attach"
	Detach     Op = "detach"
	Impair     Op = "impair"
	AddForward Op = "add forward"
	DelForward Op = "del forward"
	SetPos     Op = "set_pos"
	StopVM     Op = "stop vm"
	StartVM    Op = "start vm"
	Link       Op = "link"
)

// Step is one change to the running lab.
type Step struct {
	Op      Op
	Name    string   // VM, tux or lan name
	Port    string   // attach, detach, impair
	Lan     string   // attach, detach
	VM      *VM      // add vm
	Tux     *Tux     // add tux
	Spec    string   // impair: the spec, "" to clear; link: up or down
	Forward *Forward // add/del forward
	Kind    string   // set_pos: vm, lan or tux
	X, Y    int      // set_pos
	Why     string   // for a replacement: what changed
	// Undoable steps come before any step that removes something; if one
	// of them fails, Apply undoes the ones done so the lab is as before.
	Undoable bool
}

func (s Step) String() string {
	switch s.Op {
	case AddVM:
		v := s.VM
		var b strings.Builder
		fmt.Fprintf(&b, "add vm %s", v.Name)
		var f []string
		if v.Type != "" {
			f = append(f, v.Type)
		}
		if v.Mem > 0 {
			f = append(f, fmt.Sprintf("%d MB", v.Mem))
		}
		if v.CPU > 0 {
			f = append(f, fmt.Sprintf("%d cpu", v.CPU))
		}
		if v.Rootfs != "" {
			f = append(f, v.Rootfs)
		}
		f = append(f, fmt.Sprintf("%d eth", len(v.Eths)))
		if len(v.After) > 0 {
			f = append(f, "after "+strings.Join(v.After, " "))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(f, ", "))
		if s.Why != "" {
			fmt.Fprintf(&b, " [replaces the running one: %s]", s.Why)
		}
		return b.String()
	case DelVM:
		if s.Why != "" {
			return fmt.Sprintf("del vm %s [to replace it: %s]", s.Name, s.Why)
		}
		return "del vm " + s.Name
	case AddTux:
		out := fmt.Sprintf("add tux %s %s", s.Tux.Kind, s.Tux.Name)
		for _, o := range s.Tux.Options {
			out += fmt.Sprintf(" %s=%s", o.Name, o.Value)
		}
		if s.Why != "" {
			out += " [replaces the running one: " + s.Why + "]"
		}
		return out
	case DelTux:
		if s.Why != "" {
			return fmt.Sprintf("del tux %s [to replace it: %s]", s.Name, s.Why)
		}
		return "del tux " + s.Name
	case Attach, Detach:
		return fmt.Sprintf("%s %s %s", s.Op, s.Port, s.Lan)
	case Impair:
		if s.Spec == "" {
			return fmt.Sprintf("impair %s clear", s.Port)
		}
		return fmt.Sprintf("impair %s %s", s.Port, s.Spec)
	case AddForward, DelForward:
		return fmt.Sprintf("%s %s %s %s %s", s.Op, s.Name, s.Forward.Proto, s.Forward.Host, s.Forward.Guest)
	case Link:
		return fmt.Sprintf("link %s %s", s.Port, s.Spec)
	case SetPos:
		return fmt.Sprintf("place %s %s at %d,%d", s.Kind, s.Name, s.X, s.Y)
	}
	return fmt.Sprintf("%s %s", s.Op, s.Name)
}

// Plan is the ordered list of steps that brings a running lab to a
// topology.
type Plan struct {
	Steps []Step
	// WaitReady, when set, is called by Apply before adding a VM whose
	// <after> names VMs this plan added, with those names; it returns
	// once they are ready, or an error that stops the apply.
	WaitReady func(names []string) error
	// Keep lists what the file does not describe and the plan leaves
	// alone (raw ports, the switch's default "nat"), for the user.
	Keep []string
}

// Empty tells whether the lab already matches.
func (p *Plan) Empty() bool { return len(p.Steps) == 0 }

func (p *Plan) String() string {
	if p.Empty() {
		return "nothing to change: the running lab matches the file\n"
	}
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// NewVMs returns the VMs the plan boots (new or replaced), in order.
func (p *Plan) NewVMs() []string {
	var out []string
	for _, s := range p.Steps {
		if s.Op == AddVM {
			out = append(out, s.VM.Name)
		}
	}
	return out
}

// DefaultTux is the slirp the switch starts by itself; a file that does
// not name it leaves it alone.
const DefaultTux = proto.DefaultSlirp

// Diff computes the plan from the running lab cur to the topology t.
//
// Order: first the steps that only add (new lans, tux, VMs and their
// attachments; undone if one fails), then lans to delete (before their
// ports go, since a lan vanishes with its last port), detaches, removed
// and replaced VMs and tux, their replacements, attaches and impairments.
// Nothing running is rebooted for a lan change.
func Diff(cur *proto.Lab, t *Topology) *Plan { return DiffWith(cur, t, Options{}) }

// Options change what Diff does with things the file does not name.
type Options struct {
	// Add keeps every VM, tux and lan the file does not name: the file
	// adds to the running lab (several demos side by side) instead of
	// describing all of it. What it names is still made to match.
	Add bool
}

// DiffWith is Diff with options.
func DiffWith(cur *proto.Lab, t *Topology, o Options) *Plan {
	d := newDiffer(cur, t, o)
	d.govern()
	d.vms()
	d.tux()
	d.lans()
	return d.plan()
}

// differ holds one Diff's indexes and the steps of each phase, which
// plan puts in their order.
type differ struct {
	cur *proto.Lab
	t   *Topology
	o   Options
	p   *Plan

	curVM    map[string]*proto.VM
	curTux   map[string]*proto.Tux
	curLan   map[string]*proto.Lan
	want     map[string]bool // lans the file uses
	wantTux  map[string]*Tux
	governed map[string]bool // ports the file describes
	replaced map[string]bool // VMs deleted and added again

	adds, dels, replDel, replAdd, live, lanAdds, lanDels []Step
}

func newDiffer(cur *proto.Lab, t *Topology, o Options) *differ {
	d := &differ{cur: cur, t: t, o: o, p: &Plan{},
		curVM: map[string]*proto.VM{}, curTux: map[string]*proto.Tux{}, curLan: map[string]*proto.Lan{},
		want: map[string]bool{}, wantTux: map[string]*Tux{}, governed: map[string]bool{}, replaced: map[string]bool{}}
	for i := range cur.VMs {
		d.curVM[cur.VMs[i].Name] = &cur.VMs[i]
	}
	for i := range cur.Tux {
		d.curTux[cur.Tux[i].Name] = &cur.Tux[i]
	}
	for i := range cur.Lans {
		d.curLan[cur.Lans[i].Name] = &cur.Lans[i]
	}
	for _, l := range t.AllLans() {
		d.want[l] = true
	}
	for i := range t.Tux {
		d.wantTux[t.Tux[i].Name] = &t.Tux[i]
	}
	return d
}

// govern finds the governed ports: every VM's eths and every tux except
// an unnamed default nat. Others are left alone.
func (d *differ) govern() {
	cur, p := d.cur, d.p
	for _, v := range cur.VMs {
		for _, e := range v.Eths {
			d.governed[e.Port] = true
		}
	}
	for _, x := range cur.Tux {
		if x.Name == DefaultTux && x.Kind == "slirp" && d.wantTux[x.Name] == nil {
			p.Keep = append(p.Keep, "tux "+x.Name+" (the switch's default slirp; name it in the file to manage it)")
			continue
		}
		d.governed[x.Name] = true
	}
	for _, port := range cur.Ports {
		if !d.governed[port.Name] && !isTuxOrVMPort(cur, port.Name) {
			p.Keep = append(p.Keep, "port "+port.Name+" (a raw port; topology files do not describe raw ports)")
		}
	}
}

// vms diffs the VMs: new, replaced, removed, and the wiring and
// impairments of those that stay.
func (d *differ) vms() {
	for i := range d.t.VMs {
		v := &d.t.VMs[i]
		c := d.curVM[v.Name]
		if c == nil {
			d.adds = append(d.adds, addVMSteps(v, "", true)...)
			continue
		}
		if why := vmChanges(c, v); why != "" {
			d.replaced[v.Name] = true
			d.replDel = append(d.replDel, Step{Op: DelVM, Name: v.Name, Why: why})
			d.replAdd = append(d.replAdd, addVMSteps(v, why, false)...)
			continue
		}
		d.live = append(d.live, stateSteps(c, v)...) // lifecycle.go
		for n, e := range v.Eths {
			port := EthPort(v.Name, n)
			ce := ethOf(c, port)
			var lans []string
			cur := ""
			if ce != nil {
				lans, cur = ce.Lans, ce.Impair
			}
			d.rewire(port, lans, e.Lans)
			if e.Impair != cur {
				d.live = append(d.live, Step{Op: Impair, Port: port, Spec: e.Impair})
			}
			if ce != nil && ce.Link != e.Link {
				d.live = append(d.live, linkStep(port, e.Link, false))
			}
		}
	}
	for _, c := range d.cur.VMs {
		if d.t.VM(c.Name) == nil {
			if d.o.Add {
				d.p.Keep = append(d.p.Keep, "vm "+c.Name+" (not in the file; --add keeps it)")
				continue
			}
			d.dels = append(d.dels, Step{Op: DelVM, Name: c.Name})
		}
	}
}

// rewire adds the detaches and attaches that take port from the lans it
// has to the lans it should have.
func (d *differ) rewire(port string, cur, want []string) {
	has := map[string]bool{}
	for _, l := range cur {
		has[l] = true
	}
	for _, l := range sortedKeys(has) {
		if !contains(want, l) {
			d.live = append(d.live, Step{Op: Detach, Port: port, Lan: l})
		}
	}
	for _, l := range want {
		if !has[l] {
			d.live = append(d.live, Step{Op: Attach, Port: port, Lan: l})
		}
	}
}

// tux diffs the tux: new, replaced, removed, and the wiring, forwards
// and impairments of those that stay.
func (d *differ) tux() {
	for i := range d.t.Tux {
		x := &d.t.Tux[i]
		c := d.curTux[x.Name]
		if c == nil {
			d.adds = append(d.adds, addTuxSteps(x, "", true)...)
			continue
		}
		if why := tuxChanges(c, x); why != "" {
			d.replDel = append(d.replDel, Step{Op: DelTux, Name: x.Name, Why: why})
			d.replAdd = append(d.replAdd, addTuxSteps(x, why, false)...)
			continue
		}
		d.rewire(x.Name, c.Lans, x.Lans)
		d.forwards(x, c)
		if x.Impair != c.Impair {
			d.live = append(d.live, Step{Op: Impair, Port: x.Name, Spec: x.Impair})
		}
		if x.Link != c.Link {
			d.live = append(d.live, linkStep(x.Name, x.Link, false))
		}
	}
	for _, c := range d.cur.Tux {
		if d.wantTux[c.Name] == nil && d.governed[c.Name] {
			if d.o.Add {
				d.p.Keep = append(d.p.Keep, "tux "+c.Name+" (not in the file; --add keeps it)")
				continue
			}
			d.dels = append(d.dels, Step{Op: DelTux, Name: c.Name})
		}
	}
}

// forwards adds the forward changes of a tux that stays.
func (d *differ) forwards(x *Tux, c *proto.Tux) {
	curF := map[Forward]bool{}
	for _, f := range c.Forwards {
		curF[Forward{f.Proto, f.Host, f.Guest}] = true
	}
	wantF := map[Forward]bool{}
	for _, f := range x.Forwards {
		wantF[f] = true
	}
	for _, f := range c.Forwards {
		ff := Forward{f.Proto, f.Host, f.Guest}
		if !wantF[ff] {
			d.live = append(d.live, Step{Op: DelForward, Name: x.Name, Forward: &ff})
		}
	}
	for _, f := range x.Forwards {
		if !curF[f] {
			ff := f
			d.live = append(d.live, Step{Op: AddForward, Name: x.Name, Forward: &ff})
		}
	}
}

// lans: explicit ones first (so attaches find them), unwanted ones
// deleted whole when every port on them is governed.
func (d *differ) lans() {
	for _, l := range d.t.Lans {
		if d.curLan[l.Name] == nil {
			d.lanAdds = append(d.lanAdds, Step{Op: AddLan, Name: l.Name, Undoable: true})
		}
	}
	deletedLan := map[string]bool{}
	for _, l := range d.cur.Lans {
		if d.want[l.Name] || d.o.Add {
			continue
		}
		all := true
		for _, port := range l.Ports {
			all = all && d.governed[port]
		}
		if all {
			deletedLan[l.Name] = true
			d.lanDels = append(d.lanDels, Step{Op: DelLan, Name: l.Name})
		}
	}
	// A detach from a lan deleted whole is already done by del lan.
	kept := d.live[:0]
	for _, s := range d.live {
		if s.Op == Detach && deletedLan[s.Lan] {
			continue
		}
		kept = append(kept, s)
	}
	d.live = kept
}

// plan orders the phases' steps.
func (d *differ) plan() *Plan {
	// Detaches before deletions and attaches after, so a lan never sees
	// both the old and the new wiring at once.
	var detaches, rest []Step
	for _, s := range d.live {
		if s.Op == Detach || s.Op == DelForward {
			detaches = append(detaches, s)
		} else {
			rest = append(rest, s)
		}
	}
	p := d.p
	for _, phase := range [][]Step{d.lanAdds, d.adds, d.lanDels, detaches, d.dels, d.replDel, d.replAdd, rest, places(d.cur, d.t, d.replaced)} {
		p.Steps = append(p.Steps, phase...)
	}
	sort.Strings(p.Keep)
	return p
}

// places are the layout positions the file gives that the switch does
// not have yet (positions only matter to the graph page; they come last).
func places(cur *proto.Lab, t *Topology, replaced map[string]bool) []Step {
	var out []Step
	differs := func(x, y, cx, cy *int) bool {
		return x != nil && y != nil && (cx == nil || cy == nil || *cx != *x || *cy != *y)
	}
	for _, v := range t.VMs {
		var cx, cy *int
		for _, c := range cur.VMs {
			if c.Name == v.Name && !replaced[v.Name] {
				cx, cy = c.X, c.Y
			}
		}
		if differs(v.X, v.Y, cx, cy) {
			out = append(out, Step{Op: SetPos, Kind: "vm", Name: v.Name, X: *v.X, Y: *v.Y})
		}
	}
	for _, x := range t.Tux {
		var cx, cy *int
		for _, c := range cur.Tux {
			if c.Name == x.Name {
				cx, cy = c.X, c.Y
			}
		}
		if differs(x.X, x.Y, cx, cy) {
			out = append(out, Step{Op: SetPos, Kind: "tux", Name: x.Name, X: *x.X, Y: *x.Y})
		}
	}
	for _, l := range t.Lans {
		var cx, cy *int
		for _, c := range cur.Lans {
			if c.Name == l.Name {
				cx, cy = c.X, c.Y
			}
		}
		if differs(l.X, l.Y, cx, cy) {
			out = append(out, Step{Op: SetPos, Kind: "lan", Name: l.Name, X: *l.X, Y: *l.Y})
		}
	}
	return out
}

func isTuxOrVMPort(lab *proto.Lab, port string) bool {
	for _, x := range lab.Tux {
		if x.Name == port {
			return true
		}
	}
	for _, v := range lab.VMs {
		for _, e := range v.Eths {
			if e.Port == port {
				return true
			}
		}
	}
	return false
}

func ethOf(v *proto.VM, port string) *proto.Eth {
	for i := range v.Eths {
		if v.Eths[i].Port == port {
			return &v.Eths[i]
		}
	}
	return nil
}

func addVMSteps(v *VM, why string, undoable bool) []Step {
	s := []Step{{Op: AddVM, Name: v.Name, VM: v, Why: why, Undoable: undoable}}
	for n, e := range v.Eths {
		port := EthPort(v.Name, n)
		for _, l := range e.Lans {
			s = append(s, Step{Op: Attach, Port: port, Lan: l, Undoable: undoable})
		}
		if e.Impair != "" {
			s = append(s, Step{Op: Impair, Port: port, Spec: e.Impair, Undoable: undoable})
		}
		if e.Link != "" {
			s = append(s, linkStep(port, e.Link, undoable))
		}
	}
	return s
}

func addTuxSteps(x *Tux, why string, undoable bool) []Step {
	s := []Step{{Op: AddTux, Name: x.Name, Tux: x, Why: why, Undoable: undoable}}
	for _, l := range x.Lans {
		s = append(s, Step{Op: Attach, Port: x.Name, Lan: l, Undoable: undoable})
	}
	for i := range x.Forwards {
		s = append(s, Step{Op: AddForward, Name: x.Name, Forward: &x.Forwards[i], Undoable: undoable})
	}
	if x.Impair != "" {
		s = append(s, Step{Op: Impair, Port: x.Name, Spec: x.Impair, Undoable: undoable})
	}
	if x.Link != "" {
		s = append(s, linkStep(x.Name, x.Link, undoable))
	}
	return s
}

// vmChanges says what differs between a running VM and the file's, among
// the things that need a new machine; "" when none. Values the file
// leaves out (zero) take whatever runs.
func vmChanges(c *proto.VM, v *VM) string {
	var d []string
	if c.State == "crashed" {
		// A dead guest does not match a file that wants it: boot it again
		// (a stopped one is started or left stopped: stateSteps).
		d = append(d, "it is "+c.State)
	}
	if v.Type != "" && !strings.EqualFold(v.Type, c.Type) {
		d = append(d, fmt.Sprintf("type %s -> %s", c.Type, v.Type))
	}
	if v.Mem > 0 && v.Mem != c.Mem {
		d = append(d, fmt.Sprintf("mem %d -> %d", c.Mem, v.Mem))
	}
	if v.CPU > 0 && v.CPU != c.CPU {
		d = append(d, fmt.Sprintf("cpu %d -> %d", c.CPU, v.CPU))
	}
	if v.Rootfs != "" && v.Rootfs != c.Rootfs {
		d = append(d, fmt.Sprintf("rootfs %s -> %s", c.Rootfs, v.Rootfs))
	}
	if v.Kernel != "" && v.Kernel != c.Kernel {
		d = append(d, fmt.Sprintf("kernel %s -> %s", orNone(c.Kernel), v.Kernel))
	}
	if v.Transport != "" && v.Transport != c.Transport {
		d = append(d, fmt.Sprintf("transport %s -> %s", orNone(c.Transport), v.Transport))
	}
	if len(v.Eths) != len(c.Eths) {
		d = append(d, fmt.Sprintf("eths %d -> %d", len(c.Eths), len(v.Eths)))
	}
	return strings.Join(d, ", ")
}

// tuxChanges says what differs in a tux beyond its lans and forwards.
// Options the file gives must match; options the switch reports on its
// own (defaults) do not count.
func tuxChanges(c *proto.Tux, x *Tux) string {
	var d []string
	if x.Kind != c.Kind {
		d = append(d, fmt.Sprintf("type %s -> %s", c.Kind, x.Kind))
	}
	cur := map[string]string{}
	for _, o := range c.Options {
		cur[o.Name] = o.Value
	}
	for k, v := range c.Opts {
		cur[k] = v
	}
	for _, o := range x.Options {
		if cur[o.Name] != o.Value {
			d = append(d, fmt.Sprintf("%s %s -> %s", o.Name, orNone(cur[o.Name]), o.Value))
		}
	}
	return strings.Join(d, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
