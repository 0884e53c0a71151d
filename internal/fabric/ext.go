package fabric

import (
	"fmt"
	"sync/atomic"

	"cloonix/internal/netem"
)

// Impairments and captures reach the forwarding path through each port's
// Hooks. A port with neither has no hooks at all, so it pays one atomic
// load per frame and direction; everything below is set up under the
// fabric mutex and read by the hooks through one atomic snapshot (view).

// extState is the fabric's record of impairments and captures.
type extState struct {
	ports map[*Port]*portExt
	lans  map[string][]*Tap // lan captures, by lan name: they follow the lan's members
}

// portExt is what one port carries beyond plain forwarding.
type portExt struct {
	p     *Port
	pair  netem.Pair
	in    *impairer // nil when that direction is unimpaired
	out   *impairer
	taps  []*Tap // captures of this port
	view  atomic.Pointer[extView]
	hooks *Hooks
	gone  chan struct{} // closed when the record is dropped
}

// extView is the immutable snapshot the hooks read.
type extView struct {
	in, out *impairer
	wire    []*Tap // port captures: frames as the peer sends and receives them
	lan     []*Tap // lan captures: frames as they enter the lans the port is on
}

func (x *extState) init() {
	if x.ports == nil {
		x.ports = map[*Port]*portExt{}
		x.lans = map[string][]*Tap{}
	}
}

// extLocked returns p's record, creating it (and the watcher that drops
// it when p is deleted) if needed. Called under f.mu.
func (f *Fabric) extLocked(p *Port) *portExt {
	f.ext.init()
	if e := f.ext.ports[p]; e != nil {
		return e
	}
	e := &portExt{p: p, gone: make(chan struct{})}
	e.hooks = &Hooks{Ingress: e.ingress, Egress: e.egress}
	e.view.Store(&extView{})
	f.ext.ports[p] = e
	go func() {
		select {
		case <-p.quit:
			f.portGone(p)
		case <-e.gone:
		}
	}()
	return e
}

// hooksChanged recomputes p's hooks after a change of its impairments,
// its captures or its lans. Called under f.mu.
func (f *Fabric) hooksChanged(p *Port) {
	f.ext.init()
	var lanTaps []*Tap
	for _, m := range *p.lans.Load() {
		lanTaps = append(lanTaps, f.ext.lans[m.lan.name]...)
	}
	e := f.ext.ports[p]
	if e == nil && len(lanTaps) == 0 {
		return
	}
	if e == nil {
		e = f.extLocked(p)
	}
	v := &extView{in: e.in, out: e.out, wire: e.taps, lan: lanTaps}
	e.view.Store(v)
	if v.in == nil && v.out == nil && len(v.wire) == 0 && len(v.lan) == 0 {
		p.SetHooks(nil)
		delete(f.ext.ports, p)
		close(e.gone)
		return
	}
	p.SetHooks(e.hooks)
}

// portGone ends what a deleted port carried.
func (f *Fabric) portGone(p *Port) {
	f.mu.Lock()
	e := f.ext.ports[p]
	if e == nil {
		f.mu.Unlock()
		return
	}
	delete(f.ext.ports, p)
	close(e.gone)
	taps := e.taps
	in, out := e.in, e.out
	f.mu.Unlock()
	for _, t := range taps {
		t.end("port " + p.name + " was deleted")
	}
	for _, im := range []*impairer{in, out} {
		if im != nil {
			im.stop(false)
		}
	}
}

// ingress: captures of the port see the frame as the peer sent it; an
// ingress impairment then takes it and forwards it later (forward).
func (e *portExt) ingress(p *Port, f *Frame) bool {
	v := e.view.Load()
	if len(v.wire) > 0 {
		putAll(v.wire, f, 0)
	}
	if v.in != nil {
		v.in.push(f)
		return true
	}
	if len(v.lan) > 0 {
		putAll(v.lan, f, 0)
	}
	return false
}

// forward is the ingress impairer's exit: into the lans.
func (e *portExt) forward(f *Frame) {
	if v := e.view.Load(); len(v.lan) > 0 {
		putAll(v.lan, f, 0)
	}
	e.p.Forward(f)
}

// forwardAll forwards frames that fell due together as one batch: one
// queue lock and wakeup per destination, as the port's reader does. It
// takes them all.
func (e *portExt) forwardAll(fs []*Frame) int {
	v := e.view.Load()
	bt := batches.Get().(*batch)
	for _, f := range fs {
		if len(v.lan) > 0 {
			putAll(v.lan, f, 0)
		}
		e.p.forward(f, bt)
	}
	bt.flush(e.p)
	batches.Put(bt)
	return len(fs)
}

// egress: an egress impairment takes the frame and delivers it later;
// captures of the port see it as it leaves for the peer.
func (e *portExt) egress(p *Port, f *Frame) bool {
	v := e.view.Load()
	if v.out != nil {
		v.out.push(f)
		return true
	}
	if len(v.wire) > 0 {
		putAll(v.wire, f, 1)
	}
	return false
}

// deliver is the egress impairer's exit: to the peer.
func (e *portExt) deliver(f *Frame) {
	if v := e.view.Load(); len(v.wire) > 0 {
		putAll(v.wire, f, 1)
	}
	e.p.Deliver(f)
}

// deliverAll delivers frames that fell due together under one lock, as
// many as the port's queue has room for; the impairer keeps the rest.
func (e *portExt) deliverAll(fs []*Frame) int {
	p := e.p
	if p.conn.Load() != nil {
		p.qmu.Lock()
		room := QueueLen - len(p.q)
		closed := p.closed
		p.qmu.Unlock()
		if !closed {
			fs = fs[:max(0, min(room, len(fs)))]
		}
	}
	if v := e.view.Load(); len(v.wire) > 0 {
		for _, f := range fs {
			putAll(v.wire, f, 1)
		}
	}
	p.deliverAll(fs)
	return len(fs)
}

// SetImpair replaces a port's impairments; the zero Pair clears them.
// Frames held by the previous settings go out at once.
func (f *Fabric) SetImpair(port string, pair netem.Pair) error {
	f.mu.Lock()
	p, ok := f.ports[port]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("port %q %w", port, ErrNotFound)
	}
	e := f.extLocked(p)
	oldIn, oldOut := e.in, e.out
	e.in, e.out, e.pair = nil, nil, pair
	if !pair.In.Zero() {
		e.in = newImpairer(pair.In, port+"/in", e.forward, e.forwardAll, p.CountDrop)
	}
	if !pair.Out.Zero() {
		e.out = newImpairer(pair.Out, port+"/out", e.deliver, e.deliverAll, p.CountDrop)
	}
	f.hooksChanged(p)
	f.mu.Unlock()
	for _, im := range []*impairer{oldIn, oldOut} {
		if im != nil {
			im.stop(true)
		}
	}
	return nil
}

// Impairment returns a port's impairments and what they did so far.
func (f *Fabric) Impairment(port string) (netem.Pair, ImpairStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.ports[port]
	if !ok {
		return netem.Pair{}, ImpairStats{}, fmt.Errorf("port %q %w", port, ErrNotFound)
	}
	var st ImpairStats
	e := f.ext.ports[p]
	if e == nil {
		return netem.Pair{}, st, nil
	}
	e.in.addStats(&st)
	e.out.addStats(&st)
	return e.pair, st, nil
}

// Impairments returns every impaired port's settings, by port name.
func (f *Fabric) Impairments() map[string]netem.Pair {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]netem.Pair{}
	for p, e := range f.ext.ports {
		if !e.pair.Zero() {
			m[p.name] = e.pair
		}
	}
	return m
}
