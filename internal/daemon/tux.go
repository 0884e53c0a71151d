package daemon

import (
	"fmt"
	"log"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
	"cloonix/internal/tux"
	"cloonix/internal/wire"
)

// The tux table and its verbs. Each tux is a helper process supervised
// by package tux (tux.Helper: spawn, relaunch, the JSON control channel;
// one file per kind there) on a port named after it. Events: tux_added,
// tux_deleted, forward_added, forward_deleted here; tux_started,
// tux_died, tux_relaunched, tux_link (t2t up/down) from the helper.

func tuxFeature() Feature {
	return Feature{Name: "tux",
		Verbs: []Verb{
			typed((*Daemon).addTux), checked[proto.DelTux]((*Daemon).delTux),
			checked[proto.ForwardAdd]((*Daemon).forwardAdd), checked[proto.ForwardDel]((*Daemon).forwardDel),
		},
		List: listTux, Start: startTux,
	}
}

// DefaultNat is the slirp tux started with the switch unless <no_nat>.
const DefaultNat = proto.DefaultSlirp

// tuxProc is one entry of the tux table.
type tuxProc struct {
	name, kind string
	h          *tux.Helper
}

// tuxShared is what the switch's tux share: the MACs behind offload
// conns and the taps the switch holds (tux.TapConn), which take super frames
// whole.
type tuxShared struct{ macs wire.MACSet }

// tuxes is the daemon's tux table; callers hold d.tuxMu.
func (d *Daemon) tuxes() map[string]*tuxProc { return d.tuxs }

func (d *Daemon) getTux(name string) *tuxProc {
	d.tuxMu.Lock()
	defer d.tuxMu.Unlock()
	return d.tuxes()[name]
}

func startTux(d *Daemon) {
	d.OnStop(func() { d.stopAllTux() })
	if d.Cfg.NoNat {
		return
	}
	if err := d.AddTux(DefaultNat, "slirp", map[string]string{}); err != nil {
		log.Printf("default slirp %q not started: %v (set <no_nat>true</no_nat> to go without)", DefaultNat, err)
	}
}

func (d *Daemon) stopAllTux() {
	d.tuxMu.Lock()
	var all []*tuxProc
	for _, t := range d.tuxes() {
		all = append(all, t)
	}
	d.tuxs = map[string]*tuxProc{}
	d.tuxMu.Unlock()
	var wg sync.WaitGroup
	for _, t := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.h.Stop()
		}()
	}
	wg.Wait()
}

func (d *Daemon) addTux(c *client, a *proto.AddTux) (any, error) {
	if err := d.AddTux(a.Name, a.Kind, a.OptionMap()); err != nil {
		return nil, err
	}
	t := d.getTux(a.Name)
	if t == nil {
		return nil, nil
	}
	return &proto.TuxReply{Name: a.Name, Kind: a.Kind, Pid: t.h.Pid()}, nil
}

func (d *Daemon) tuxDir() string { return filepath.Join(d.Cfg.WorkDir, "tux") }

// tuxSpec is what package tux needs to check and start a tux.
func (d *Daemon) tuxSpec(name, kind string, o map[string]string) tux.Spec {
	s := tux.Spec{Name: name, Kind: kind, Options: o, Dir: d.tuxDir(), Password: d.Cfg.Password, MACs: &d.tuxSh.macs,
		Listeners: d.Cfg.ListenersDir(), HostPorts: d.Cfg.SlirpHostPorts}
	d.tuxMu.Lock()
	for _, t := range d.tuxes() {
		s.Others = append(s.Others, tux.Other{Name: t.name, Kind: t.kind, Options: t.h.Shown()})
	}
	d.tuxMu.Unlock()
	return s
}

// AddTux starts a tux helper on a new port named after it. It checks
// everything first and leaves nothing behind when it fails.
func (d *Daemon) AddTux(name, kind string, o map[string]string) error {
	if err := proto.CheckName("tux", name); err != nil {
		return err
	}
	spec := d.tuxSpec(name, kind, o)
	var port *fabric.Port
	spec.Plug = func(c fabric.Conn) { port.SetConn(c) }
	h, err := tux.New(spec, d.Emit)
	if err != nil {
		return err
	}
	d.tuxMu.Lock()
	if _, ok := d.tuxes()[name]; ok {
		d.tuxMu.Unlock()
		return fmt.Errorf("tux %q already exists (del tux %s first)", name, name)
	}
	p, err := d.Fab.AddPort(name, "tux")
	if err != nil {
		d.tuxMu.Unlock()
		return fmt.Errorf("a port named %q already exists; choose another tux name", name)
	}
	port = p
	d.tuxes()[name] = &tuxProc{name: name, kind: kind, h: h}
	d.tuxMu.Unlock()

	if err := h.Launch(); err != nil {
		d.tuxMu.Lock()
		delete(d.tuxes(), name)
		d.tuxMu.Unlock()
		_ = d.Fab.DelPort(name)
		return fmt.Errorf("tux %s: %v", name, err)
	}
	d.Emit("port_added", "name", name, "kind", "tux")
	d.Emit("tux_added", "name", name, "kind", kind, "pid", strconv.Itoa(h.Pid()))
	return nil
}

func (d *Daemon) delTux(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	return nil, d.DelTux(name)
}

// DelTux stops a tux's helper and removes its port.
func (d *Daemon) DelTux(name string) error {
	d.tuxMu.Lock()
	t, ok := d.tuxes()[name]
	if ok {
		delete(d.tuxes(), name)
	}
	d.tuxMu.Unlock()
	if !ok {
		return fmt.Errorf("tux %q: no such tux (see `cloonix ctrl list`)", name)
	}
	t.h.Stop()
	if err := d.DelPort(name); err != nil {
		log.Printf("tux %s: %v", name, err)
	}
	d.Emit("tux_deleted", "name", name)
	return nil
}

func (d *Daemon) forwardArgs(m *proto.Msg, needGuest bool) (*tuxProc, tux.Forward, error) {
	var f tux.Forward
	name, err := need(m, "name")
	if err != nil {
		return nil, f, err
	}
	f.Proto, f.Host, f.Guest = m.Get("proto"), m.Get("host"), m.Get("guest")
	if f.Proto == "" {
		f.Proto = "tcp"
	}
	if needGuest && f.Guest == "" {
		return nil, f, fmt.Errorf("<%s> needs guest=\"GUESTIP:PORT\"", m.Name)
	}
	if needGuest {
		if err := tux.CheckForwardPublic(f.Host, m.Get("public") == "true"); err != nil {
			return nil, f, err
		}
	}
	if err := tux.CheckForward(f.Proto, f.Host, f.Guest); err != nil {
		return nil, f, err
	}
	t := d.getTux(name)
	if t == nil {
		return nil, f, fmt.Errorf("tux %q: no such tux (see `cloonix ctrl list`)", name)
	}
	return t, f, nil
}

func (d *Daemon) forwardAdd(c *client, m *proto.Msg) ([]byte, error) {
	t, f, err := d.forwardArgs(m, true)
	if err != nil {
		return nil, err
	}
	if err := t.h.AddForward(f); err != nil {
		return nil, err
	}
	d.Emit("forward_added", "name", t.name, "proto", f.Proto, "host", f.Host, "guest", f.Guest)
	return nil, nil
}

func (d *Daemon) forwardDel(c *client, m *proto.Msg) ([]byte, error) {
	t, f, err := d.forwardArgs(m, false)
	if err != nil {
		return nil, err
	}
	if err := t.h.DelForward(f.Proto, f.Host); err != nil {
		return nil, err
	}
	d.Emit("forward_deleted", "name", t.name, "proto", f.Proto, "host", f.Host)
	return nil, nil
}

// listTux adds each tux, with its helper's counters, to list.
func listTux(d *Daemon, lab *proto.Lab) {
	d.tuxMu.Lock()
	var all []*tuxProc
	for _, t := range d.tuxes() {
		all = append(all, t)
	}
	d.tuxMu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	stats := make([]*tux.Stats, len(all))
	var wg sync.WaitGroup
	for i, t := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i], _ = t.h.Stats(500 * time.Millisecond)
		}()
	}
	wg.Wait()
	for i, t := range all {
		st := t.h.Status()
		x := proto.Tux{Name: t.name, Kind: t.kind, State: st.State, Pid: st.Pid, Restarts: st.Restarts,
			Lans: d.PortLans(t.name), Forwards: []proto.Forward{}}
		for _, f := range st.Forwards {
			x.Forwards = append(x.Forwards, proto.Forward{Proto: f.Proto, Host: f.Host, Guest: f.Guest})
		}
		for _, o := range st.Options {
			x.Options = append(x.Options, proto.Option{Name: o.Name, Value: o.Value})
		}
		if s := stats[i]; s != nil {
			x.Counters = proto.Counters{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes, Drops: s.Drops}
			x.Options = append(x.Options, proto.Option{Name: "link", Value: s.State})
		}
		lab.Tux = append(lab.Tux, x)
	}
}
