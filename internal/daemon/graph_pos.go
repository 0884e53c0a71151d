package daemon

import (
	"fmt"

	"cloonix/internal/proto"
)

// Drawing positions of VMs, lans and tux, set by the graph page (and by
// fconf load from <x>/<y>) and returned by list, so a lab reopens as it
// was drawn. The switch only keeps them; it never interprets them.

// maxPos bounds a coordinate; maxPositions bounds the table (entries for
// deleted things stay, so a thing re-added under its name keeps its place).
const (
	maxPos       = 1000000
	maxPositions = 100000
)

type posKey struct{ kind, name string }

type position struct{ x, y int }

func graphPosFeature() Feature {
	return Feature{Name: "graph_pos", Verbs: []Verb{typed((*Daemon).setPos)}}
}

// SetPos records where kind (vm, lan or tux) name is drawn.
func (d *Daemon) SetPos(kind, name string, x, y int) error {
	switch kind {
	case "vm", "lan", "tux":
	default:
		return fmt.Errorf("set_pos: kind %q: use vm, lan or tux", kind)
	}
	if err := proto.CheckName(kind, name); err != nil {
		return err
	}
	if x < -maxPos || x > maxPos || y < -maxPos || y > maxPos {
		return fmt.Errorf("set_pos %s %s: x and y must be within ±%d", kind, name, maxPos)
	}
	if !d.exists(kind, name) {
		return fmt.Errorf("set_pos: %s %q: no such %s (see `cloonix ctrl list`)", kind, name, kind)
	}
	d.posMu.Lock()
	m := d.pos
	k := posKey{kind, name}
	if _, ok := m[k]; !ok && len(m) >= maxPositions {
		d.posMu.Unlock()
		return fmt.Errorf("set_pos: the switch already keeps %d positions", maxPositions)
	}
	m[k] = position{x, y}
	d.posMu.Unlock()
	d.Emit("pos", "kind", kind, "name", name, "x", fmt.Sprint(x), "y", fmt.Sprint(y))
	return nil
}

// exists tells whether the lab has kind name now.
func (d *Daemon) exists(kind, name string) bool {
	if kind == "lan" {
		return d.Fab.HasLan(name)
	}
	lab := &proto.Lab{}
	for _, f := range d.listers {
		f(d, lab)
	}
	if kind == "vm" {
		for _, v := range lab.VMs {
			if v.Name == name {
				return true
			}
		}
		return false
	}
	for _, t := range lab.Tux {
		if t.Name == name {
			return true
		}
	}
	return false
}

func (d *Daemon) setPos(c *client, r *proto.SetPos) (any, error) {
	return nil, d.SetPos(r.Kind, r.Name, *r.X, *r.Y)
}

// fillPositions adds the kept positions to a listed lab; Lab calls it
// after every lister so VMs and tux are there.
func (d *Daemon) fillPositions(lab *proto.Lab) {
	d.posMu.Lock()
	defer d.posMu.Unlock()
	m := d.pos
	if len(m) == 0 {
		return
	}
	at := func(kind, name string, px, py **int) {
		if p, ok := m[posKey{kind, name}]; ok {
			x, y := p.x, p.y
			*px, *py = &x, &y
		}
	}
	for i := range lab.VMs {
		at("vm", lab.VMs[i].Name, &lab.VMs[i].X, &lab.VMs[i].Y)
	}
	for i := range lab.Lans {
		at("lan", lab.Lans[i].Name, &lab.Lans[i].X, &lab.Lans[i].Y)
	}
	for i := range lab.Tux {
		at("tux", lab.Tux[i].Name, &lab.Tux[i].X, &lab.Tux[i].Y)
	}
}
