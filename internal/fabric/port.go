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
	qmu     sync.Mutex
	q       []*Frame
	closed  bool
	busy    bool // someone owns the write side: an inline reader or the writer
	handoff bool // the inline owner left work (kept bytes, queued frames) to the writer
	wake    chan struct{}

	// Hooks are the extension points for capture and impairments: they
	// see frames entering the switch from this port and frames leaving
	// to it. Nil when unused, so they cost one atomic load.
	hooks atomic.Pointer[Hooks]
	down  atomic.Bool // `ctrl link PORT down` (link.go)
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

// reader forwards every frame the peer sends until it leaves. While the
// transport holds more frames already read (Buffered), deliveries and
// counters collect in a batch and go out together: one lock and at most
// one wakeup per destination per batch, not per frame.
func (p *Port) reader(box *connBox) {
	bt := &batch{}
	bc, _ := box.c.(interface{ Buffered() int })
	for {
		f, err := box.c.ReadFrame()
		if err != nil {
			bt.flush(p)
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
		p.input(f, bt)
		if bc == nil || bt.frames >= maxBatch || bt.bytes >= maxBatchBytes || bc.Buffered() == 0 {
			bt.flush(p)
		}
	}
}

// maxBatch and maxBatchBytes bound how long a frame waits in its
// reader's batch. Many small frames per batch save system calls and
// wakeups; the byte bound keeps a batch's inline write within what a
// socket buffer takes at once (about 200 KiB for unix sockets).
const (
	maxBatch      = 512
	maxBatchBytes = 64 << 10
)

// batch is a reader's pending work: frames per destination port and
// counts, applied by flush.
type batch struct {
	frames, bytes uint64
	out           []outq
	mem           []memberCount
	dst           [8]*Port // scratch for one frame's destinations
	rel           releaser // for frames written inline
}

type outq struct {
	port   *Port
	frames []*Frame
}

type memberCount struct {
	m                  *member
	rxF, rxB, txF, txB uint64
}

func (b *batch) member(m *member) *memberCount {
	for i := range b.mem {
		if b.mem[i].m == m {
			return &b.mem[i]
		}
	}
	b.mem = append(b.mem, memberCount{m: m})
	return &b.mem[len(b.mem)-1]
}

func (b *batch) add(q *Port, f *Frame) {
	for i := range b.out {
		if b.out[i].port == q {
			b.out[i].frames = append(b.out[i].frames, f)
			return
		}
	}
	// Reuse a slot left from an earlier batch when there is one.
	if n := len(b.out); n < cap(b.out) {
		b.out = b.out[:n+1]
		b.out[n].port = q
		b.out[n].frames = append(b.out[n].frames[:0], f)
		return
	}
	b.out = append(b.out, outq{port: q, frames: append(make([]*Frame, 0, maxBatch), f)})
}

func (b *batch) flush(p *Port) {
	if b.frames > 0 {
		p.counters.rxFrames.Add(b.frames)
		p.counters.rxBytes.Add(b.bytes)
		b.frames, b.bytes = 0, 0
	}
	for i := range b.mem {
		c := &b.mem[i]
		if c.rxF > 0 {
			c.m.c.rxFrames.Add(c.rxF)
			c.m.c.rxBytes.Add(c.rxB)
		}
		if c.txF > 0 {
			c.m.c.txN(c.txF, c.txB)
		}
		b.mem[i] = memberCount{}
	}
	b.mem = b.mem[:0]
	for i := range b.out {
		o := &b.out[i]
		o.port.deliverWith(o.frames, &b.rel)
		clear(o.frames)
		o.frames = o.frames[:0]
		o.port = nil
	}
	b.out = b.out[:0]
}

// Input switches one frame that entered through p (the caller's
// reference is consumed), for callers outside a port's reader (helpers
// that inject frames).
func (p *Port) Input(f *Frame) {
	b := batches.Get().(*batch)
	p.input(f, b)
	b.flush(p)
	batches.Put(b)
}

// Forward switches a frame from p without the ingress hook or counting
// (an ingress impairment releasing a frame it held).
func (p *Port) Forward(f *Frame) {
	b := batches.Get().(*batch)
	p.forward(f, b)
	b.flush(p)
	batches.Put(b)
}

// batches serve Input and Forward, which run outside a reader.
var batches = sync.Pool{New: func() any { return &batch{} }}

func (p *Port) input(f *Frame, bt *batch) {
	if p.dropIfDown(f) { // link.go
		return
	}
	bt.frames++
	bt.bytes += uint64(f.N)
	if h := p.hooks.Load(); h != nil && h.Ingress != nil {
		f = f.Own() // a hook may hold it for long
		if h.Ingress(p, f) {
			return
		}
	}
	p.forward(f, bt)
}

func (p *Port) forward(f *Frame, bt *batch) {
	b := f.Bytes()
	n := len(b)
	lans := *p.lans.Load()
	if len(lans) == 0 || n < MinFrame {
		f.Release()
		return
	}
	dstMAC, srcMAC := macKey(b[0:8]), macKey(b[6:14])
	now := p.fab.now.Load()
	flood := b[0]&1 != 0 // broadcast and multicast
	dst := bt.dst[:0]
	for _, m := range lans {
		l := m.lan
		mc := bt.member(m)
		mc.rxF++
		mc.rxB += uint64(n)
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
						mc.txF++
						mc.txB += uint64(n)
					}
				}
				continue
			}
		}
		for _, mm := range members {
			if q := mm.port; q != p {
				var added bool
				if dst, added = addOnce(dst, q); added {
					mc.txF++
					mc.txB += uint64(n)
				}
			}
		}
	}
	if len(dst) == 0 {
		f.Release()
		return
	}
	if len(dst) > 1 {
		f.Ref(int32(len(dst) - 1))
	}
	for _, q := range dst {
		if h := q.hooks.Load(); h != nil && h.Egress != nil {
			// This destination's reference, on a buffer of its own: a
			// hook may hold it for long.
			g := f.Own()
			if h.Egress(q, g) {
				continue
			}
			bt.add(q, g)
			continue
		}
		bt.add(q, f)
	}
}

// pinQueue is how many frames of a port's queue may be views on readers'
// slabs (Frame.Own); past it, queued frames are copied, so a slow peer
// pins at most this many slabs and not its whole queue's worth.
const pinQueue = 64

// Output queues one reference of f for the peer, through the egress hook.
func (p *Port) Output(f *Frame) {
	if h := p.hooks.Load(); h != nil && h.Egress != nil {
		f = f.Own()
		if h.Egress(p, f) {
			return
		}
	}
	p.Deliver(f)
}

// Deliver queues f for the writer without hooks; a full queue, or no
// peer to write to, drops it (counted on this port only: a slow or absent
// peer never holds up the sender). Safe from any goroutine.
func (p *Port) Deliver(f *Frame) {
	if p.conn.Load() == nil || p.down.Load() {
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
	if n >= pinQueue {
		f = f.Own()
	}
	p.q = append(p.q, f)
	idle := !p.busy
	p.qmu.Unlock()
	if n == 0 && idle {
		p.signal()
	}
}

func (p *Port) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// deliverAll hands frames (one reference each) to the peer, as
// deliverWith, for callers outside a reader (impairments).
func (p *Port) deliverAll(fs []*Frame) {
	b := batches.Get().(*batch)
	p.deliverWith(fs, &b.rel)
	batches.Put(b)
}

// deliverWith hands frames (one reference each) to the peer. When nobody
// is writing to it and nothing waits, a transport that can (TryWriter)
// writes them at once from the caller; otherwise they queue under one
// lock, and what does not fit is dropped and counted on this port.
func (p *Port) deliverWith(fs []*Frame, rel *releaser) {
	if len(fs) == 0 {
		return
	}
	box := p.conn.Load()
	if box == nil || p.down.Load() {
		p.dropAll(fs)
		return
	}
	p.qmu.Lock()
	if p.closed {
		p.qmu.Unlock()
		p.dropAll(fs)
		return
	}
	if tw, ok := box.c.(TryWriter); ok && !p.busy && len(p.q) == 0 {
		p.busy = true
		p.qmu.Unlock()
		p.writeNow(tw, fs, rel)
		return
	}
	n := len(p.q)
	take := min(QueueLen-n, len(fs))
	for i := max(0, pinQueue-n); i < take; i++ {
		fs[i] = fs[i].Own()
	}
	p.q = append(p.q, fs[:take]...)
	idle := !p.busy
	p.qmu.Unlock()
	if n == 0 && take > 0 && idle {
		p.signal()
	}
	if rest := fs[take:]; len(rest) > 0 {
		p.dropAll(rest)
	}
}

// writeNow writes inline as the write side's owner, then gives the
// ownership up, or hands it to the writer goroutine if work is left.
func (p *Port) writeNow(tw TryWriter, fs []*Frame, rel *releaser) {
	kept, err := tw.WriteNow(fs)
	var bytes uint64
	for _, f := range fs {
		bytes += uint64(f.N)
		rel.release(f)
	}
	rel.flush()
	if err != nil {
		p.counters.drops.Add(uint64(len(fs)))
	} else {
		p.counters.txN(uint64(len(fs)), bytes)
	}
	p.qmu.Lock()
	if (kept && err == nil) || len(p.q) > 0 {
		p.handoff = true
		p.qmu.Unlock()
		p.signal()
		return
	}
	p.busy = false
	p.qmu.Unlock()
}

func (p *Port) dropAll(fs []*Frame) {
	p.counters.drops.Add(uint64(len(fs)))
	for _, f := range fs {
		f.Release()
	}
}

// writer owns the write side when the queue has frames and nobody else
// writes, or when an inline writer hands it over; it then drains the
// queue a batch at a time, flushing after each batch, so a lone frame
// leaves at once and a burst costs one write. The queue's two slices
// alternate between producers and the writer: nothing is allocated per
// frame.
func (p *Port) writer() {
	buf := make([]*Frame, 0, QueueLen)
	rel := &releaser{run: make([]*Frame, 0, QueueLen)}
	for {
		p.qmu.Lock()
		switch {
		case p.handoff:
			p.handoff = false // busy stays set: the write side is ours now
		case !p.busy && len(p.q) > 0:
			p.busy = true
		default:
			p.qmu.Unlock()
			select {
			case <-p.wake:
				continue
			case <-p.quit:
				p.drain()
				return
			}
		}
		for {
			batch := p.q
			p.q = buf
			p.qmu.Unlock()
			// An empty batch still flushes what an inline writer kept.
			p.writeBatch(batch, rel)
			clear(batch)
			buf = batch[:0]
			p.qmu.Lock()
			if len(p.q) == 0 {
				p.busy = false
				p.qmu.Unlock()
				break
			}
		}
	}
}

func (p *Port) writeBatch(batch []*Frame, rel *releaser) {
	box := p.conn.Load()
	var frames, bytes uint64
	var err error
	if box != nil {
		for _, f := range batch {
			if err = box.c.WriteFrame(f.Bytes()); err != nil {
				break
			}
			frames++
			bytes += uint64(f.N)
		}
		if err == nil {
			err = box.c.Flush()
		}
	}
	// Frames are released only after Flush: a transport may write them
	// from where they are (writev) instead of copying.
	for _, f := range batch {
		rel.release(f)
	}
	rel.flush()
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
