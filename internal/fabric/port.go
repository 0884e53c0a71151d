package fabric

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Port is one attachment point: a VM eth, a tux, or a raw port. It has at
// most one connected peer at a time; a new peer replaces the old one, so
// a restarted guest or helper simply reconnects.
type Port struct {
	name     string
	kind     string
	fab      *Fabric
	lans     atomic.Pointer[[]*member]
	conn     atomic.Pointer[connBox]
	listener atomic.Pointer[Listener]
	counters counters
	quit     chan struct{}
	once     sync.Once

	// The output queue: Deliver appends under qmu, the writer swaps the
	// whole slice out and writes it as one batch (one wakeup and usually
	// one system call for many frames). wake has room for one token and
	// is signalled when a frame lands in an empty queue.
	qmu    sync.Mutex
	q      []*Frame
	closed bool
	wake   chan struct{}

	// Hooks are the extension points for capture and impairments: they
	// see frames entering the switch from this port and frames leaving
	// to it. Nil when unused, so they cost one atomic load.
	hooks atomic.Pointer[Hooks]
}

// Hooks observe or alter a port's traffic (capture, impairments).
type Hooks struct {
	// Ingress sees each frame the peer sent, before forwarding. It
	// returns true if it took ownership of the frame's reference (to
	// delay, drop or capture it); it must then call p.Forward or
	// f.Release later.
	Ingress func(p *Port, f *Frame) bool
	// Egress sees each frame queued to the peer. It returns true if it
	// took ownership of the frame's reference (to delay, shape or drop it);
	// it must then call p.Deliver or f.Release later.
	Egress func(p *Port, f *Frame) bool
}

type connBox struct{ c Conn }

func newPort(f *Fabric, name, kind string) *Port {
	p := &Port{name: name, kind: kind, fab: f, quit: make(chan struct{}), wake: make(chan struct{}, 1),
		q: make([]*Frame, 0, QueueLen)}
	p.lans.Store(&[]*member{})
	return p
}

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
		delay := 5 * time.Millisecond
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
				// Transient (EMFILE, ECONNABORTED): back off rather
				// than spin, and keep serving.
				select {
				case <-p.quit:
					return
				case <-time.After(delay):
				}
				if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				continue
			}
			delay = 5 * time.Millisecond
			p.SetConn(c)
		}
	}()
}

// SetConn attaches a peer, replacing (and closing) any previous one, and
// starts reading from it. The writer starts with the first peer.
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
		p.qmu.Lock()
		p.closed = true
		p.qmu.Unlock()
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
			if errors.Is(err, ErrSkip) {
				p.counters.drops.Add(1)
				continue
			}
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
	p.counters.rx(f.N)
	if h := p.hooks.Load(); h != nil && h.Ingress != nil && h.Ingress(p, f) {
		return
	}
	p.Forward(f, dst)
}

// Forward switches a frame from p without the ingress hook or counting
// (an ingress impairment releasing a frame it held).
func (p *Port) Forward(f *Frame, dst []*Port) {
	b := f.Bytes()
	n := len(b)
	lans := *p.lans.Load()
	if len(lans) == 0 || n < MinFrame {
		f.Release()
		return
	}
	dstMAC, srcMAC := macKey(b[0:6]), macKey(b[6:12])
	now := p.fab.now.Load()
	flood := b[0]&1 != 0 // broadcast and multicast
	for _, m := range lans {
		l := m.lan
		m.c.rx(n)
		if b[6]&1 == 0 {
			l.learn(srcMAC, p, now)
		}
		members := *l.members.Load()
		if !flood {
			// A learnt port that left the lan since (a detach racing
			// with this frame) is not trusted: flood instead.
			if q := l.lookup(dstMAC); q != nil && isMember(members, q) {
				if q != p {
					var added bool
					if dst, added = addOnce(dst, q); added {
						m.c.tx(n)
					}
				}
				continue
			}
		}
		for _, mm := range members {
			if q := mm.port; q != p {
				var added bool
				if dst, added = addOnce(dst, q); added {
					m.c.tx(n)
				}
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

func isMember(ms []*member, q *Port) bool {
	for _, m := range ms {
		if m.port == q {
			return true
		}
	}
	return false
}

func addOnce(dst []*Port, q *Port) ([]*Port, bool) {
	for _, x := range dst {
		if x == q {
			return dst, false
		}
	}
	return append(dst, q), true
}

// Output queues one reference of f for the peer, through the egress hook.
func (p *Port) Output(f *Frame) {
	if h := p.hooks.Load(); h != nil && h.Egress != nil && h.Egress(p, f) {
		return
	}
	p.Deliver(f)
}

// Deliver queues f for the writer without hooks; a full queue, or no
// peer to write to, drops it (counted on this port only: a slow or absent
// peer never holds up the sender). Safe from any goroutine.
func (p *Port) Deliver(f *Frame) {
	if p.conn.Load() == nil {
		p.counters.drops.Add(1)
		f.Release()
		return
	}
	p.qmu.Lock()
	n := len(p.q)
	if n >= QueueLen || p.closed {
		p.qmu.Unlock()
		p.counters.drops.Add(1)
		f.Release()
		return
	}
	p.q = append(p.q, f)
	p.qmu.Unlock()
	if n == 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// writer drains the queue to the peer a batch at a time, flushing after
// each batch, so a lone frame leaves at once and a burst costs one write.
// The queue's two slices alternate between Deliver and the writer, so
// nothing is allocated per frame.
func (p *Port) writer() {
	buf := make([]*Frame, 0, QueueLen)
	for {
		p.qmu.Lock()
		batch := p.q
		if len(batch) == 0 {
			p.qmu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.quit:
				p.drain()
				return
			}
		}
		p.q = buf
		p.qmu.Unlock()
		p.writeBatch(batch)
		clear(batch)
		buf = batch[:0]
	}
}

func (p *Port) writeBatch(batch []*Frame) {
	box := p.conn.Load()
	var frames, bytes uint64
	var err error
	for _, f := range batch {
		if box != nil && err == nil {
			if err = box.c.WriteFrame(f.Bytes()); err == nil {
				frames++
				bytes += uint64(f.N)
			}
		}
		f.Release()
	}
	if box != nil && err == nil {
		err = box.c.Flush()
	}
	if err != nil || box == nil {
		// What the peer did not take is lost; its own reader will
		// notice a dead socket and free the port for a new peer.
		p.counters.drops.Add(uint64(len(batch)))
		return
	}
	p.counters.txN(frames, bytes)
}

func (p *Port) drain() {
	p.qmu.Lock()
	q := p.q
	p.q = nil
	p.qmu.Unlock()
	for _, f := range q {
		f.Release()
	}
}
