package daemon

import (
	"fmt"
	"path/filepath"

	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/proto"
	"cloonix/internal/wire"
)

// rawPort is a port made by `add port` for an external program.
type rawPort struct {
	name, kind, socket string
}

// PortsFeature is raw ports for external programs: add_port, del_port.
func PortsFeature() Feature {
	return Feature{Name: "ports", Verbs: []Verb{typed((*Daemon).addPort), typed((*Daemon).delPort)}}
}

// Listen makes the listener for a port of the given kind at its socket
// path in work_dir/ports (or a TCP address for kind stream with tcp set).
func (d *Daemon) Listen(kind, path, tcp string) (fabric.Listener, error) {
	switch kind {
	case "stream":
		if tcp != "" {
			return wire.ListenStreamTCP(tcp)
		}
		return wire.ListenStream(path)
	case "dgram":
		if tcp != "" {
			return nil, fmt.Errorf("kind dgram takes no tcp address")
		}
		return wire.ListenDgram(path)
	}
	if mk, ok := d.listenKinds[kind]; ok {
		return mk(d, path)
	}
	return nil, fmt.Errorf("port kind %q: use stream or dgram", kind)
}

// AddPort creates a fabric port with its listener; the caller names it.
func (d *Daemon) AddPort(name, kind, path, tcp string) (*fabric.Port, fabric.Listener, error) {
	if d.Fab.Port(name) != nil {
		return nil, nil, fmt.Errorf("port %q already exists", name)
	}
	l, err := d.Listen(kind, path, tcp)
	if err != nil {
		return nil, nil, fmt.Errorf("port %q: %v", name, err)
	}
	p, err := d.Fab.AddPort(name, kind)
	if err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("port %q already exists", name)
	}
	p.Serve(l)
	d.Emit("port_added", "name", name, "kind", kind, "socket", l.Addr())
	return p, l, nil
}

// DelPort removes a port and reports the lans it left.
func (d *Daemon) DelPort(name string) error {
	p := d.Fab.Port(name)
	if p == nil {
		return fmt.Errorf("port %q: no such port", name)
	}
	if err := d.Fab.DelPort(name); err != nil {
		return err
	}
	d.Emit("port_deleted", "name", name)
	return nil
}

func (d *Daemon) addPort(c *client, r *proto.AddPort) (any, error) {
	name := r.Name
	kind := r.Kind
	if kind == "" {
		kind = "stream"
	}
	if kind == cnt.PortKind || kind == machine.VTapPortKind {
		return nil, fmt.Errorf("port %q: kind %s is a guest's eth, made by add_vm; a raw port is stream, dgram, bess or daemon", name, kind)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.ports[name]; ok {
		return nil, fmt.Errorf("port %q already exists", name)
	}
	path := filepath.Join(d.Cfg.PortsDir(), name+".sock")
	_, l, err := d.AddPort(name, kind, path, r.TCP)
	if err != nil {
		return nil, err
	}
	d.ports[name] = &rawPort{name: name, kind: kind, socket: l.Addr()}
	return &proto.PortReply{Name: name, Socket: l.Addr()}, nil
}

func (d *Daemon) delPort(c *client, r *proto.DelPort) (any, error) {
	name := r.Name
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.ports[name]; !ok {
		return nil, fmt.Errorf("port %q: no such raw port (VM eths go with `del vm`, tux with `del tux`)", name)
	}
	delete(d.ports, name)
	return nil, d.DelPort(name)
}
