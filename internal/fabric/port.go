package fabric

import (
	"sync"
	"sync/atomic"
)

// Port is one attachment point: a VM eth, a tux, or a raw port. It has at
// most one connected peer at a time; a new peer replaces the old one, so
// a restarted guest or helper simply reconnects.
type Port struct {
	name     string
	kind     string
	fab      *Fabric
	lans     atomic.Pointer[[]*Lan]
	conn     atomic.Pointer[connBox]
	listener atomic.Pointer[Listener]
	counters counters
	q        chan *Frame
	quit     chan struct{}
	once     sync.Once

	// Hooks are the extension points for capture and impairments: they
	// see frames entering the switch from this port and frames leaving
	// to it. Nil when unused, so they cost one atomic load.
	hooks atomic.Pointer[Hooks]
}

// Hooks observe or alter a port's traffic (capture, impairments).
type Hooks struct {
	// Ingress sees each frame the peer sent, before forwarding.
	// Returning false drops it.
	Ingress func(p *Port, f *Frame) bool
	// Egress sees each frame queued to the peer. It returns true if it
	// took ownership of the frame's reference (to delay, shape or drop it);
	// it must then call p.Deliver or f.Release later.
	Egress func(p *Port, f *Frame) bool
}

type connBox struct{ c Conn }

// Name is the port's name.
func (p *Port) Name() string { return p.name }

// Kind is the transport kind given at creation.
func (p *Port) Kind() string { return p.kind }

// Counters returns the port's counters.
func (p *Port) Counters() Counters { return p.counters.snap() }

// Connected tells whether a peer is attached.
func (p *Port) Connected() bool { return p.conn.Load() != nil }

// SetHooks installs or (with nil) removes hooks.
func (p *Port) SetHooks(h *Hooks) { p.hooks.Store(h) }

// CountDrop counts one frame lost at this port.
func (p *Port) CountDrop() { p.counters.drops.Add(1) }

// Serve accepts peers from l for the port's life; the port owns l.
func (p *Port) Serve(l Listener) {
	p.listener.Store(&l)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				select {
				case <-p.quit:
					return
				default:
				}
				if isClosed(err) {
					return
				}
				continue
			}
			p.SetConn(c)
		}
	}()
}

// SetConn attaches a peer, replacing (and closing) any previous one, and
// starts reading from it.
func (p *Port) SetConn(c Conn) {
	select {
	case <-p.quit:
		_ = c.Close()
		return
	default:
	}
	box := &connBox{c: c}
	old := p.conn.Swap(box)
	if old != nil {
		_ = old.c.Close()
	}
	if on := p.fab.OnConn; on != nil && old == nil {
		on(p.name, true)
	}
	go p.reader(box)
}

func (p *Port) shutdown() {
	p.once.Do(func() {
		close(p.quit)
		if l := p.listener.Load(); l != nil {
			_ = (*l).Close()
		}
		if b := p.conn.Swap(nil); b != nil {
			_ = b.c.Close()
		}
	})
}

// reader forwards every frame the peer sends until it leaves.
func (p *Port) reader(box *connBox) {
	var scratch [8]*Port
	for {
		f, err := box.c.ReadFrame()
		if err != nil {
			_ = box.c.Close()
			if p.conn.CompareAndSwap(box, nil) {
				if on := p.fab.OnConn; on != nil {
					on(p.name, false)
				}
			}
			return
		}
		p.Input(f, scratch[:0])
	}
}

// Input switches one frame that entered through p (the caller's
// reference is consumed). dst is scratch space, reused by the caller.
func (p *Port) Input(f *Frame, dst []*Port) {
	b := f.Bytes()
	p.counters.rx(len(b))
	if h := p.hooks.Load(); h != nil && h.Ingress != nil && !h.Ingress(p, f) {
		f.Release()
		return
	}
	lans := *p.lans.Load()
	if len(lans) == 0 {
		f.Release()
		return
	}
	dstMAC, srcMAC := macKey(b[0:6]), macKey(b[6:12])
	now := p.fab.now.Load()
	flood := b[0]&1 != 0 // broadcast and multicast
	for _, l := range lans {
		l.counters.rx(len(b))
		if b[6]&1 == 0 {
			l.learn(srcMAC, p, now)
		}
		if !flood {
			if q := l.lookup(dstMAC); q != nil {
				if q != p {
					dst = addOnce(dst, q)
					l.counters.tx(len(b))
				}
				continue
			}
		}
		for _, q := range *l.members.Load() {
			if q != p {
				dst = addOnce(dst, q)
				l.counters.tx(len(b))
			}
		}
	}
	if len(dst) == 0 {
		f.Release()
		return
	}
	f.Ref(int32(len(dst) - 1))
	for _, q := range dst {
		q.Output(f)
	}
}

func addOnce(dst []*Port, q *Port) []*Port {
	for _, x := range dst {
		if x == q {
			return dst
		}
	}
	return append(dst, q)
}

// Output queues one reference of f for the peer, through the egress hook.
func (p *Port) Output(f *Frame) {
	if h := p.hooks.Load(); h != nil && h.Egress != nil && h.Egress(p, f) {
		return
	}
	p.Deliver(f)
}

// Deliver queues f for the writer without hooks; a full queue drops it.
func (p *Port) Deliver(f *Frame) {
	select {
	case p.q <- f:
	default:
		p.counters.drops.Add(1)
		f.Release()
	}
}

// writer drains the queue to the peer, flushing when the queue is empty.
func (p *Port) writer() {
	for {
		var f *Frame
		select {
		case f = <-p.q:
		case <-p.quit:
			p.drain()
			return
		}
		box := p.conn.Load()
		if box == nil {
			p.counters.drops.Add(1)
			f.Release()
			continue
		}
		n := f.N
		err := box.c.WriteFrame(f.Bytes())
		f.Release()
		if err != nil {
			p.counters.drops.Add(1)
			continue
		}
		p.counters.tx(n)
		if len(p.q) == 0 {
			if err := box.c.Flush(); err != nil {
				p.counters.drops.Add(1)
			}
		}
	}
}

func (p *Port) drain() {
	for {
		select {
		case f := <-p.q:
			f.Release()
		default:
			return
		}
	}
}
