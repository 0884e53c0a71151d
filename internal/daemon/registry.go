package daemon

import (
	"fmt"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
)

// Feature is one part of the switch: its verbs, the port kinds it can
// listen for, its share of `list` and what it starts with the switch.
// A daemon is built from a list of features (Features is the full
// switch), so a test can build one with only the parts it needs, and
// adding a feature is one file plus one line in Features.
type Feature struct {
	Name   string
	Verbs  []Verb
	Listen map[string]func(path string) (fabric.Listener, error) // port kinds beyond stream and dgram
	List   func(d *Daemon, lab *proto.Lab)                       // fills its part of `list`
	Start  func(d *Daemon)                                       // run once the switch listens
}

// Verb is one request name and its handler.
type Verb struct {
	Name string
	h    handler
}

// Features is every feature of the switch, in start order (its stop
// hooks run in the reverse order).
func Features() []Feature {
	return []Feature{
		CoreFeature(), LansFeature(), PortsFeature(), captureFeature(), graphPosFeature(),
		impairFeature(), tuxFeature(), vdeFeature(), vmsFeature(), vmLifeFeature(),
	}
}

// typed makes a verb whose handler gets its request decoded and
// validated; a non-nil reply is encoded with encoding/xml.
func typed[R any, P interface {
	*R
	proto.Request
}](f func(d *Daemon, c *client, r *R) (any, error)) Verb {
	return Verb{Name: P(new(R)).Verb(), h: func(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
		r := new(R)
		if err := proto.DecodeRequest(m, P(r)); err != nil {
			return nil, err
		}
		v, err := f(d, c, r)
		if err != nil || v == nil {
			return nil, err
		}
		return proto.EncodeReply(v)
	}}
}

// checked makes a verb of a handler that still reads the raw message,
// after checking the message decodes into R and passes R's Validate.
func checked[R any, P interface {
	*R
	proto.Request
}](f handler) Verb {
	return Verb{Name: P(new(R)).Verb(), h: func(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
		if err := proto.DecodeRequest(m, P(new(R))); err != nil {
			return nil, err
		}
		return f(d, c, m)
	}}
}

// raw makes a verb of a handler without arguments to decode.
func raw(name string, f handler) Verb { return Verb{Name: name, h: f} }

// install adds the features' parts to d; a verb or port kind given twice
// is a programming error.
func (d *Daemon) install(feats []Feature) {
	for _, f := range feats {
		for _, v := range f.Verbs {
			if _, dup := d.verbs[v.Name]; dup {
				panic(fmt.Sprintf("feature %s: verb %s registered twice", f.Name, v.Name))
			}
			d.verbs[v.Name] = v.h
		}
		for k, l := range f.Listen {
			if _, dup := d.listenKinds[k]; dup {
				panic(fmt.Sprintf("feature %s: port kind %s registered twice", f.Name, k))
			}
			d.listenKinds[k] = l
		}
		if f.List != nil {
			d.listers = append(d.listers, f.List)
		}
		if f.Start != nil {
			d.startHooks = append(d.startHooks, f.Start)
		}
	}
}
