package fabric

import (
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// How frames reach a port: inline writes, the writer goroutine, slabs,
// and the forwarding benchmark.

func BenchmarkForward(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
		sink interface {
			Conn
			count() int64
		}
		views bool // frames are views on slabs, as StreamConn reads them
	}{{"64", 64, &discard{}, false}, {"1500", 1500, &discard{}, false}, {"64/inline", 64, &discardNow{}, false}, {"1500/inline", 1500, &discardNow{}, false},
		{"1500/views", 1500, &discard{}, true}, {"1500/inline/views", 1500, &discardNow{}, true}} {
		size, sink := c.size, c.sink
		b.Run(c.name, func(b *testing.B) {
			f := New()
			defer f.Close()
			pa, _ := f.AddPort("A", "mem")
			pb, _ := f.AddPort("B", "mem")
			_ = f.Attach("A", "lan")
			_ = f.Attach("B", "lan")
			pb.SetConn(sink)
			// B's MAC is learnt, as in steady traffic.
			hello := NewFrame(60)
			copy(hello.Bytes(), eth(bcast, mac(0xb), 0, 60))
			pb.Input(hello)
			gen := &genConn{tmpl: eth(mac(0xb), mac(0xa), 1, size), n: b.N, alloc: NewAllocator(), p: pb, done: make(chan struct{}), views: c.views}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			pa.SetConn(gen)
			for sink.count()+int64(pb.Counters().Drops) < int64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			if d := pb.Counters().Drops; d > 0 {
				b.Logf("%d drops", d)
			}
			gen.Close()
		})
	}
}

// genConn produces n copies of tmpl as fast as the queue ahead takes
// them, reporting data buffered as a stream socket would in a burst.
type genConn struct {
	tmpl  []byte
	n, i  int
	alloc *Allocator
	p     *Port // the destination, to pace on its queue
	done  chan struct{}
	once  sync.Once
	views bool
	slab  *Slab
	off   int
}

func (g *genConn) ReadFrame() (*Frame, error) {
	if g.i >= g.n {
		<-g.done
		return nil, io.EOF
	}
	if g.i&255 == 0 {
		for g.p.queued() > QueueLen/2 {
			time.Sleep(time.Microsecond)
		}
	}
	g.i++
	if g.views {
		n := len(g.tmpl)
		if g.slab == nil || g.off+n > len(g.slab.Data()) {
			if g.slab != nil {
				g.alloc.Retire(g.slab)
			}
			g.slab, g.off = g.alloc.Slab(), 0
		}
		copy(g.slab.Data()[g.off:], g.tmpl)
		fr := g.alloc.View(g.slab, g.off, n)
		g.off += n
		return fr, nil
	}
	fr := g.alloc.Frame(len(g.tmpl))
	copy(fr.Bytes(), g.tmpl)
	return fr, nil
}

func (g *genConn) Buffered() int {
	if g.i&63 == 0 || g.i >= g.n {
		return 0
	}
	return 1
}
func (g *genConn) WriteFrame(b []byte) error { return nil }
func (g *genConn) Flush() error              { return nil }
func (g *genConn) Close() error              { g.once.Do(func() { close(g.done) }); return nil }

func (p *Port) queued() int {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return len(p.q)
}

type discard struct{ n atomic.Int64 }

func (d *discard) ReadFrame() (*Frame, error) { select {} }
func (d *discard) WriteFrame(b []byte) error  { d.n.Add(1); return nil }
func (d *discard) Flush() error               { return nil }
func (d *discard) Close() error               { return nil }
func (d *discard) count() int64               { return d.n.Load() }

// discardNow also writes inline (TryWriter), as a stream socket does.
type discardNow struct{ discard }

func (d *discardNow) WriteNow(fs []*Frame) (bool, error) {
	d.n.Add(int64(len(fs)))
	return false, nil
}

// TestMACTable: a flood of source MACs stays within the fixed table,
// recent MACs are found, aging and forgetting empty it.
func TestMACTable(t *testing.T) {
	l := newLan("x", true)
	p, q := &Port{name: "p"}, &Port{name: "q"}
	if l.lookup(1) != nil {
		t.Fatal("empty lan knows a MAC")
	}
	for i := uint64(0); i < 100000; i++ {
		l.learn(i<<8|2, p, 100)
	}
	l.learn(0x525400000001, q, 200)
	if l.lookup(0x525400000001) != q {
		t.Error("a MAC learnt last is not found")
	}
	n := 0
	for i := range l.tab.Load() {
		if l.tab.Load()[i].Load() != nil {
			n++
		}
	}
	if n > macSlots {
		t.Fatalf("%d entries", n)
	}
	l.age(150) // everything p learnt at time 100 goes
	if l.lookup(0x525400000001) != q || l.lookup(99999<<8|2) != nil {
		t.Error("aging kept an old MAC or dropped a fresh one")
	}
	l.forget(q)
	if l.lookup(0x525400000001) != nil {
		t.Error("forget kept q's MAC")
	}
}

// tryConn is a peer whose transport writes without blocking
// (TryWriter): WriteNow takes some frames at once and keeps the rest,
// as a full socket would; Flush sends what was kept, then what
// WriteFrame buffered.
type tryConn struct {
	*memConn
	mu       sync.Mutex
	kept     [][]byte
	buffered [][]byte
	n        int
	inline   atomic.Int64
}

func (c *tryConn) WriteNow(fs []*Frame) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	take := len(fs)
	if len(c.kept) > 0 {
		take = 0
	} else if c.n%3 == 0 {
		take = len(fs) / 2 // the socket filled up half way
	}
	for i, f := range fs {
		b := append([]byte(nil), f.Bytes()...)
		if i < take {
			c.out <- b
			c.inline.Add(1)
		} else {
			c.kept = append(c.kept, b)
		}
	}
	return len(c.kept) > 0, nil
}

func (c *tryConn) WriteFrame(b []byte) error {
	c.mu.Lock()
	c.buffered = append(c.buffered, append([]byte(nil), b...))
	c.mu.Unlock()
	return nil
}

func (c *tryConn) Flush() error {
	c.mu.Lock()
	all := append(c.kept, c.buffered...)
	c.kept, c.buffered = nil, nil
	c.mu.Unlock()
	for _, b := range all {
		c.out <- b
	}
	return nil
}

// TestInlineWrites: with a transport that writes inline, frames from
// several senders to one port keep each sender's order through inline
// writes, kept bytes and the writer goroutine; nothing is lost unseen.
func TestInlineWrites(t *testing.T) {
	l := newLab(t, "S1", "S2", "S3")
	d := &tryConn{memConn: newMem()}
	pd, _ := l.f.AddPort("D", "try")
	pd.SetConn(d)
	for _, n := range []string{"S1", "S2", "S3", "D"} {
		l.attach(n, "lan")
	}
	d.in <- eth(bcast, mac(0xd), 0, 60) // the lan learns D's MAC
	time.Sleep(20 * time.Millisecond)
	for len(d.out) > 0 {
		<-d.out
	}
	for _, s := range []string{"S2", "S3"} {
		for len(l.conn[s].out) > 0 {
			<-l.conn[s].out
		}
	}
	const per = 3000
	var wg sync.WaitGroup
	for i, s := range []string{"S1", "S2", "S3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 1; k <= per; k++ {
				l.send(s, eth(mac(0xd), mac(byte(i+1)), uint32(i)<<24|uint32(k), 60+k%100))
				if k%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	last := map[uint32]uint32{}
	got := 0
	deadline := time.After(10 * time.Second)
	for got+int(pd.Counters().Drops) < 3*per {
		select {
		case b := <-d.out:
			v := binary.BigEndian.Uint32(b[14:])
			src, k := v>>24, v&0xffffff
			if k <= last[src] {
				t.Fatalf("sender %d: frame %d after %d", src, k, last[src])
			}
			last[src] = k
			got++
		case <-deadline:
			t.Fatalf("got %d frames and %d drops of %d", got, pd.Counters().Drops, 3*per)
		}
	}
	// tx is added once a batch is written: let the last one land.
	for i := 0; i < 100 && pd.Counters().TxFrames != uint64(got); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if c := pd.Counters(); c.TxFrames != uint64(got) || got == 0 {
		t.Errorf("D tx %d, delivered %d", c.TxFrames, got)
	}
	if d.inline.Load() == 0 {
		t.Error("no frame was written inline")
	}
	t.Logf("%d delivered (%d inline), %d dropped", got, d.inline.Load(), pd.Counters().Drops)
}

// TestSlabViews: a slab comes back to its allocator only once it is
// retired and its last view released, whoever releases it; Own gives a
// queued frame a buffer of its own.
func TestSlabViews(t *testing.T) {
	a := NewAllocator()
	s := a.Slab()
	copy(s.Data(), "0123456789abcdefghijklmnopqrstuvwxyz")
	v1, v2 := a.View(s, 0, 14), a.View(s, 14, 20)
	v2.Ref(1) // delivered to two ports
	a.Retire(s)
	v1.Release()
	var r releaser
	r.release(v2)
	r.flush()
	if a.sback.Load() != nil {
		t.Fatal("slab freed while a view holds it")
	}
	if string(v2.Bytes()) != "efghijklmnopqrstuvwx" {
		t.Fatalf("view reads %q", v2.Bytes())
	}
	o := v2.Own() // the last reference: the slab is free
	if o.slab != nil || string(o.Bytes()) != "efghijklmnopqrstuvwx" {
		t.Fatalf("owned copy %q, slab %v", o.Bytes(), o.slab)
	}
	if a.Slab() != s {
		t.Fatal("slab not reused after its last view went")
	}
	o.Release()
}

// TestHooksGetOwnFrames: hooks may hold frames for long, so they never
// see a view on a reader's slab.
func TestHooksGetOwnFrames(t *testing.T) {
	f := New()
	defer f.Close()
	pa, _ := f.AddPort("A", "mem")
	pb, _ := f.AddPort("B", "mem")
	_ = f.Attach("A", "lan")
	_ = f.Attach("B", "lan")
	var views, seen atomic.Int32
	look := func(p *Port, fr *Frame) bool {
		seen.Add(1)
		if fr.slab != nil {
			views.Add(1)
		}
		return false
	}
	pa.SetHooks(&Hooks{Ingress: look})
	pb.SetHooks(&Hooks{Egress: look})
	a := NewAllocator()
	s := a.Slab()
	copy(s.Data(), eth(bcast, mac(0xa), 0, 60))
	pa.Input(a.View(s, 0, 60))
	a.Retire(s)
	if seen.Load() != 2 || views.Load() != 0 {
		t.Fatalf("hooks saw %d frames, %d of them views; want 2 and 0", seen.Load(), views.Load())
	}
}
