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
	return nil, nil
}

func (d *Daemon) delLan(c *client, r *proto.DelLan) (any, error) {
	name := r.Name
	if err := mgmtGuard("", name); err != nil {
		return nil, err
	}
	if err := d.Fab.DelLan(name); err != nil {
		return nil, fmt.Errorf("lan %q: no such lan", name)
	}
	return nil, nil
}

// AttachPort puts a port on a lan and reports it (also used by topology
// loading and feature files).
func (d *Daemon) AttachPort(port, lan string) error {
	if err := proto.CheckName("lan", lan); err != nil {
		return err
	}
	if err := mgmtGuard(port, lan); err != nil {
		return err
	}
	if err := d.Fab.Attach(port, lan); err != nil {
		if errors.Is(err, fabric.ErrNotFound) {
			return fmt.Errorf("port %q: no such port (VM:ethN, a tux or a raw port; see `cloonix ctrl list`)", port)
		}
		return err
	}
	return nil
}

// DetachPort takes a port off a lan and reports it.
func (d *Daemon) DetachPort(port, lan string) error {
	if err := mgmtGuard(port, lan); err != nil {
		return err
	}
	if err := d.Fab.Detach(port, lan); err != nil {
		if errors.Is(err, fabric.ErrNotFound) {
			return fmt.Errorf("detach %s from %s: %v", port, lan, err)
		}
		return err
	}
	return nil
}

func (d *Daemon) attach(c *client, r *proto.Attach) (any, error) {
	return nil, d.AttachPort(r.Port, r.Lan)
}

func (d *Daemon) detach(c *client, r *proto.Detach) (any, error) {
	return nil, d.DetachPort(r.Port, r.Lan)
}
