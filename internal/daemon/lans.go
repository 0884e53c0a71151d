package daemon

import (
	"errors"
	"fmt"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
)

// LansFeature is lans and attachments: add_lan, del_lan, attach, detach.
func LansFeature() Feature {
	return Feature{Name: "lans", Verbs: []Verb{
		typed((*Daemon).addLan), typed((*Daemon).delLan), typed((*Daemon).attach), typed((*Daemon).detach),
	}}
}

func (d *Daemon) addLan(c *client, r *proto.AddLan) (any, error) {
	name := r.Name
	if err := d.Fab.AddLan(name); err != nil {
		return nil, fmt.Errorf("lan %q already exists", name)
	}
	d.Emit("lan_added", "name", name)
	return nil, nil
}

func (d *Daemon) delLan(c *client, r *proto.DelLan) (any, error) {
	name := r.Name
	_, lans := d.Fab.Snapshot()
	var ports []string
	for _, l := range lans {
		if l.Name == name {
			ports = l.Ports
		}
	}
	if err := d.Fab.DelLan(name); err != nil {
		return nil, fmt.Errorf("lan %q: no such lan", name)
	}
	for _, p := range ports {
		d.Emit("detached", "port", p, "lan", name)
	}
	d.Emit("lan_deleted", "name", name)
	return nil, nil
}

// AttachPort puts a port on a lan and reports it (also used by topology
// loading and feature files).
func (d *Daemon) AttachPort(port, lan string) error {
	if err := proto.CheckName("lan", lan); err != nil {
		return err
	}
	existed := d.Fab.HasLan(lan)
	if err := d.Fab.Attach(port, lan); err != nil {
		if errors.Is(err, fabric.ErrNotFound) {
			return fmt.Errorf("port %q: no such port (VM:ethN, a tux or a raw port; see `cloonix ctrl list`)", port)
		}
		return err
	}
	if !existed {
		d.Emit("lan_added", "name", lan)
	}
	d.Emit("attached", "port", port, "lan", lan)
	return nil
}

// DetachPort takes a port off a lan and reports it.
func (d *Daemon) DetachPort(port, lan string) error {
	if err := d.Fab.Detach(port, lan); err != nil {
		if errors.Is(err, fabric.ErrNotFound) {
			return fmt.Errorf("detach %s from %s: %v", port, lan, err)
		}
		return err
	}
	d.Emit("detached", "port", port, "lan", lan)
	if !d.Fab.HasLan(lan) {
		d.Emit("lan_deleted", "name", lan)
	}
	return nil
}

func (d *Daemon) attach(c *client, r *proto.Attach) (any, error) {
	return nil, d.AttachPort(r.Port, r.Lan)
}

func (d *Daemon) detach(c *client, r *proto.Detach) (any, error) {
	return nil, d.DetachPort(r.Port, r.Lan)
}
