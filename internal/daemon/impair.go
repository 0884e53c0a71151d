package daemon

import (
	"fmt"
	"strings"

	"cloonix/internal/netem"
	"cloonix/internal/proto"
)

// Link impairments (docs/impairments.md). The fabric applies them on a
// port's queues; here they are checked, set per port or on every port of
// a lan, reported by events and shown by list.
//
//	<impair id="1" name="A:eth0" spec="delay=50ms loss=1%"/>      set, both directions
//	<impair id="2" lan="lan_one" spec="delay=20ms"/>             every port of the lan (out by default)
//	<impair id="3" port="A:eth0" dir="in" spec="rate=1mbit"/>    one direction, the other kept
//	<impair id="4" name="A:eth0" clear="true"/>                   remove (dir= to remove one side)
//	<impair id="5" name="A:eth0"/>                                show settings and counters
//
// The reply lists the ports concerned:
// <impaired port="A:eth0" impair="delay=50ms loss=1%" lost="0" .../>.

func impairFeature() Feature {
	return Feature{Name: "impair", Verbs: []Verb{typed((*Daemon).impair)}}
}

// target is what a request names: a port, or a lan's ports.
type target struct {
	lan   string   // set when the name is a lan
	ports []string // the ports concerned
}

// resolveTarget finds the port or lan a request names with port=, lan=
// or name= (either, refused when ambiguous).
// The request's Validate saw that exactly one is given.
func (d *Daemon) resolveTarget(r proto.Target) (target, error) {
	port, lan, name := r.Port, r.Lan, r.Name
	if name != "" {
		isPort, isLan := d.Fab.Port(name) != nil, d.Fab.HasLan(name)
		switch {
		case isPort && isLan:
			return target{}, fmt.Errorf("%q is both a port and a lan; say which with --port or --lan", name)
		case isPort:
			port = name
		case isLan:
			lan = name
		default:
			return target{}, fmt.Errorf("%q: no such port or lan (see `cloonix ctrl list`)", name)
		}
	}
	if port != "" {
		if d.Fab.Port(port) == nil {
			return target{}, fmt.Errorf("port %q: no such port (VM:ethN, a tux or a raw port; see `cloonix ctrl list`)", port)
		}
		return target{ports: []string{port}}, nil
	}
	_, lans := d.Fab.Snapshot()
	for _, l := range lans {
		if l.Name == lan {
			return target{lan: lan, ports: l.Ports}, nil
		}
	}
	return target{}, fmt.Errorf("lan %q: no such lan (see `cloonix ctrl list`)", lan)
}

func (d *Daemon) impair(c *client, r *proto.Impair) (any, error) {
	t, err := d.resolveTarget(r.Target)
	if err != nil {
		return nil, err
	}
	dir := r.Dir
	if dir == "" {
		dir = "both"
		if t.lan != "" {
			// Once per frame crossing the lan: on the way out to each
			// port, so a lan delay of 50ms adds 100ms to a round trip.
			dir = "out"
		}
	}
	spec, clear := strings.TrimSpace(r.Spec), r.Clear
	if !clear && spec == "" {
		return d.impairShow(t)
	}
	var set netem.Pair
	if !clear {
		if set, err = netem.Parse(spec); err != nil {
			return nil, fmt.Errorf("impair %s: %v", t.name(), err)
		}
		if dir != "both" && set.In != set.Out {
			return nil, fmt.Errorf("impair %s: the settings have in/out sections; drop --%s or the sections", t.name(), dir)
		}
	}
	if len(t.ports) == 0 {
		return nil, fmt.Errorf("lan %q has no ports to impair; impairments live on ports (attach them first)", t.lan)
	}
	out := &proto.ImpairReply{}
	for _, port := range t.ports {
		cur, _, err := d.Fab.Impairment(port)
		if err != nil {
			continue // the port went away meanwhile
		}
		next := cur
		switch dir {
		case "in":
			next.In = set.In
		case "out":
			next.Out = set.Out
		default:
			next = set
		}
		if err := d.setImpair(port, next); err != nil {
			return nil, err
		}
		out.Ports = append(out.Ports, proto.Impaired{Port: port, Impair: next.String()})
	}
	return out, nil
}

func (t target) name() string {
	if t.lan != "" {
		return "lan " + t.lan
	}
	return t.ports[0]
}

func (d *Daemon) impairShow(t target) (*proto.ImpairReply, error) {
	out := &proto.ImpairReply{}
	for _, port := range t.ports {
		p, st, err := d.Fab.Impairment(port)
		if err != nil {
			continue
		}
		out.Ports = append(out.Ports, proto.Impaired{Port: port, Impair: p.String(),
			Lost: &st.Lost, Duplicated: &st.Duplicated, Corrupted: &st.Corrupted, Overflow: &st.Overflow, Down: &st.Down})
	}
	return out, nil
}

func (d *Daemon) setImpair(port string, p netem.Pair) error {
	if err := d.Fab.SetImpair(port, p); err != nil {
		return fmt.Errorf("port %q: no such port", port)
	}
	d.Emit("impair", "port", port, "impair", p.String())
	return nil
}

// SetImpair sets a port's impairments from their text ("" clears them),
// for topology loading: `<impair>` of an `<eth>` or a `<TUX>`.
func (d *Daemon) SetImpair(port, text string) error {
	p, err := netem.Parse(text)
	if err != nil {
		return fmt.Errorf("port %q: impair %q: %v", port, text, err)
	}
	if d.Fab.Port(port) == nil {
		return fmt.Errorf("port %q: no such port", port)
	}
	return d.setImpair(port, p)
}

// PortImpair is a port's impairment text ("" when none).
func (d *Daemon) PortImpair(port string) string {
	p, _, _ := d.Fab.Impairment(port)
	return p.String()
}

// fillImpairs shows impairments in list: on ports, VM eths and tux. It
// runs after the listers, which make the eths and tux.
func (d *Daemon) fillImpairs(lab *proto.Lab) {
	im := d.Fab.Impairments()
	if len(im) == 0 {
		return
	}
	for i := range lab.Ports {
		if p, ok := im[lab.Ports[i].Name]; ok {
			lab.Ports[i].Impair = p.String()
		}
	}
	for i := range lab.VMs {
		for j := range lab.VMs[i].Eths {
			if p, ok := im[lab.VMs[i].Eths[j].Port]; ok {
				lab.VMs[i].Eths[j].Impair = p.String()
			}
		}
	}
	for i := range lab.Tux {
		if p, ok := im[lab.Tux[i].Name]; ok {
			lab.Tux[i].Impair = p.String()
		}
	}
}
