package fabric

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memConn is an in-memory peer: the test pushes frames in with send and
// reads what the switch delivered from out.
type memConn struct {
	in     chan []byte
	out    chan []byte
	gate   chan struct{} // when non-nil, WriteFrame blocks until it is closed
	done   chan struct{}
	once   sync.Once
	skip   atomic.Int32 // ReadFrame reports this many ErrSkip first
	writes atomic.Int64
}

func newMem() *memConn {
	return &memConn{in: make(chan []byte, 4096), out: make(chan []byte, 1<<16), done: make(chan struct{})}
}

func (m *memConn) ReadFrame() (*Frame, error) {
	if m.skip.Load() > 0 {
		m.skip.Add(-1)
		return nil, fmt.Errorf("%w: test", ErrSkip)
	}
	select {
	case b := <-m.in:
		f := NewFrame(len(b))
		copy(f.Bytes(), b)
		return f, nil
	case <-m.done:
		return nil, io.EOF
	}
}

func (m *memConn) WriteFrame(b []byte) error {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-m.done:
			return io.ErrClosedPipe
		}
	}
	m.writes.Add(1)
	select {
	case m.out <- append([]byte(nil), b...):
		return nil
	case <-m.done:
		return io.ErrClosedPipe
	}
}

func (m *memConn) Flush() error { return nil }
func (m *memConn) Close() error {
	m.once.Do(func() { close(m.done) })
	return nil
}

var bcast = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func mac(i byte) [6]byte { return [6]byte{0x52, 0x54, 0, 0, 0, i} }

// eth builds a frame dst<-src whose payload carries seq.
func eth(dst, src [6]byte, seq uint32, size int) []byte {
	b := make([]byte, size)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	b[12], b[13] = 0x88, 0xb5 // local experimental ethertype
	binary.BigEndian.PutUint32(b[14:18], seq)
	return b
}

type lab struct {
	t    *testing.T
	f    *Fabric
	conn map[string]*memConn
}

func newLab(t *testing.T, ports ...string) *lab {
	t.Helper()
	l := &lab{t: t, f: New(), conn: map[string]*memConn{}}
	t.Cleanup(l.f.Close)
	for _, n := range ports {
		p, err := l.f.AddPort(n, "mem")
		if err != nil {
			t.Fatal(err)
		}
		c := newMem()
		l.conn[n] = c
		p.SetConn(c)
	}
	return l
}

func (l *lab) attach(port, lan string) {
	l.t.Helper()
	if err := l.f.Attach(port, lan); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) send(port string, b []byte) { l.conn[port].in <- b }

// expect waits for one frame at port and checks it.
func (l *lab) expect(port string, want []byte) {
	l.t.Helper()
	select {
	case got := <-l.conn[port].out:
		if !bytes.Equal(got, want) {
			l.t.Fatalf("port %s got frame %x, want %x", port, got[:18], want[:18])
		}
	case <-time.After(5 * time.Second):
		l.t.Fatalf("port %s: frame %x never arrived", port, want[:18])
	}
}

// quiet checks that nothing more reaches the ports (after the frames in
// flight had time to arrive).
func (l *lab) quiet(ports ...string) {
	l.t.Helper()
	time.Sleep(50 * time.Millisecond)
	for _, p := range ports {
		select {
		case got := <-l.conn[p].out:
			l.t.Fatalf("port %s got unexpected frame %x", p, got[:18])
		default:
		}
	}
}

// TestSeedABC is the seed's example: A and B on lan_one, B's one port on
// lan_one and lan_two, C on lan_two. A and B see each other, B and C too,
// A and C never do, whatever the destination.
func TestSeedABC(t *testing.T) {
	l := newLab(t, "A", "B", "C")
	l.attach("A", "lan_one")
	l.attach("B", "lan_one")
	l.attach("B", "lan_two")
	l.attach("C", "lan_two")
	var seq uint32
	next := func() uint32 { seq++; return seq }

	// Broadcasts: from A reach B only, from C reach B only, from B reach both.
	fa := eth(bcast, mac(0xa), next(), 60)
	l.send("A", fa)
	l.expect("B", fa)
	l.quiet("A", "C")
	fc := eth(bcast, mac(0xc), next(), 60)
	l.send("C", fc)
	l.expect("B", fc)
	l.quiet("A", "C")
	fb := eth(bcast, mac(0xb), next(), 60)
	l.send("B", fb)
	l.expect("A", fb)
	l.expect("C", fb)
	l.quiet("A", "B", "C")

	// Unicast between neighbours after learning. B's frames to A's MAC
	// also flood lan_two (A is unknown there), reaching C, B's neighbour.
	for _, c := range []struct {
		from     string
		src, dst byte
		to       []string
	}{{"A", 0xa, 0xb, []string{"B"}}, {"C", 0xc, 0xb, []string{"B"}}, {"B", 0xb, 0xa, []string{"A", "C"}}, {"B", 0xb, 0xc, []string{"C", "A"}}} {
		f := eth(mac(c.dst), mac(c.src), next(), 100)
		l.send(c.from, f)
		for _, to := range c.to {
			l.expect(to, f)
		}
		l.quiet("A", "B", "C")
	}
	// A to C's MAC: C is known only on lan_two, so lan_one floods to B.
	f := eth(mac(0xc), mac(0xa), next(), 100)
	l.send("A", f)
	l.expect("B", f)
	l.quiet("C")
	f = eth(mac(0xa), mac(0xc), next(), 100)
	l.send("C", f)
	l.expect("B", f)
	l.quiet("A")
	// Multicast also stays within the lans.
	mc := [6]byte{0x01, 0x00, 0x5e, 0, 0, 1}
	f = eth(mc, mac(0xa), next(), 80)
	l.send("A", f)
	l.expect("B", f)
	l.quiet("A", "C")
}

// TestFlooding: broadcast, multicast and unknown unicast reach every
// other port of the lan; the sender never gets its own frame back.
func TestFlooding(t *testing.T) {
	l := newLab(t, "P1", "P2", "P3", "P4")
	for _, p := range []string{"P1", "P2", "P3", "P4"} {
		l.attach(p, "lan")
	}
	for i, dst := range [][6]byte{bcast, {0x01, 0x00, 0x5e, 1, 2, 3}, {0x33, 0x33, 0, 0, 0, 1}, mac(0x77)} {
		f := eth(dst, mac(1), uint32(i), 64)
		l.send("P1", f)
		for _, p := range []string{"P2", "P3", "P4"} {
			l.expect(p, f)
		}
		l.quiet("P1", "P2", "P3", "P4")
	}
}

// TestMACLearning: once a MAC is learnt, unicast to it reaches only its
// port; a MAC that moves is followed; a multicast source is never learnt.
func TestMACLearning(t *testing.T) {
	l := newLab(t, "A", "B", "C")
	for _, p := range []string{"A", "B", "C"} {
		l.attach(p, "lan")
	}
	hello := eth(bcast, mac(0xb), 1, 60)
	l.send("B", hello)
	l.expect("A", hello)
	l.expect("C", hello)
	u := eth(mac(0xb), mac(0xa), 2, 60)
	l.send("A", u)
	l.expect("B", u)
	l.quiet("C", "A")
	// B's MAC now talks from C: unicast follows it.
	moved := eth(bcast, mac(0xb), 3, 60)
	l.send("C", moved)
	l.expect("A", moved)
	l.expect("B", moved)
	u = eth(mac(0xb), mac(0xa), 4, 60)
	l.send("A", u)
	l.expect("C", u)
	l.quiet("B", "A")
	// A frame to a MAC learnt on the sender's own port goes nowhere.
	back := eth(mac(0xa), mac(0xa), 5, 60)
	l.send("A", back)
	l.quiet("A", "B", "C")
	// A multicast source address is not learnt: unicast to it floods.
	msrc := [6]byte{0x01, 0, 0, 0, 0, 9}
	l.send("C", eth(bcast, msrc, 6, 60))
	<-l.conn["A"].out
	<-l.conn["B"].out
	f := eth(msrc, mac(0xa), 7, 60)
	l.send("A", f)
	l.expect("B", f)
	l.expect("C", f)
}

// TestOncePerPort: a port reached through several lans gets each frame once.
func TestOncePerPort(t *testing.T) {
	l := newLab(t, "X", "Y", "Z")
	for _, lan := range []string{"l1", "l2", "l3"} {
		l.attach("X", lan)
		l.attach("Y", lan)
	}
	l.attach("Z", "l3")
	for i, dst := range [][6]byte{bcast, mac(0x55)} {
		f := eth(dst, mac(1), uint32(i), 64)
		l.send("X", f)
		l.expect("Y", f)
		l.expect("Z", f)
		l.quiet("X", "Y", "Z")
	}
	// Counters: X's frame entered 3 lans; Y got it once per send.
	ports, lans := l.f.Snapshot()
	for _, p := range ports {
		if p.Name == "Y" && p.Counters.TxFrames != 2 {
			t.Errorf("Y tx %d, want 2", p.Counters.TxFrames)
		}
	}
	var tx uint64
	for _, ln := range lans {
		if ln.Counters.RxFrames != 2 {
			t.Errorf("lan %s rx %d, want 2", ln.Name, ln.Counters.RxFrames)
		}
		tx += ln.Counters.TxFrames
	}
	if tx != 4 { // one delivery to Y and one to Z per frame
		t.Errorf("lans delivered %d in all, want 4 (each port once)", tx)
	}
}

// TestCounters: per port and per lan frames and bytes.
func TestCounters(t *testing.T) {
	l := newLab(t, "A", "B", "C")
	l.attach("A", "one")
	l.attach("B", "one")
	l.attach("C", "two")
	for i := 0; i < 10; i++ {
		f := eth(bcast, mac(0xa), uint32(i), 100+i)
		l.send("A", f)
		l.expect("B", f)
	}
	want := uint64(0)
	for i := 0; i < 10; i++ {
		want += uint64(100 + i)
	}
	ports, lans := l.f.Snapshot()
	got := map[string]PortInfo{}
	for _, p := range ports {
		got[p.Name] = p
	}
	if c := got["A"].Counters; c.RxFrames != 10 || c.RxBytes != want || c.TxFrames != 0 {
		t.Errorf("A counters %+v, want rx 10 frames %d bytes", c, want)
	}
	if c := got["B"].Counters; c.TxFrames != 10 || c.TxBytes != want || c.RxFrames != 0 || c.Drops != 0 {
		t.Errorf("B counters %+v, want tx 10 frames %d bytes", c, want)
	}
	if c := got["C"].Counters; c != (Counters{}) {
		t.Errorf("C counters %+v, want zero", c)
	}
	for _, ln := range lans {
		switch ln.Name {
		case "one":
			if c := ln.Counters; c.RxFrames != 10 || c.RxBytes != want || c.TxFrames != 10 || c.TxBytes != want {
				t.Errorf("lan one %+v", c)
			}
		case "two":
			if ln.Counters != (Counters{}) {
				t.Errorf("lan two %+v, want zero", ln.Counters)
			}
		}
	}
	// Counters of a port that leaves stay in the lan's totals.
	if err := l.f.Detach("A", "one"); err != nil {
		t.Fatal(err)
	}
	_, lans = l.f.Snapshot()
	for _, ln := range lans {
		if ln.Name == "one" && ln.Counters.RxFrames != 10 {
			t.Errorf("lan one after A left: %+v", ln.Counters)
		}
	}
}

// TestSlowPort: a peer that stops reading loses its own frames (counted
// on its port) while the rest of the lan keeps getting everything.
func TestSlowPort(t *testing.T) {
	l := newLab(t, "A", "B")
	slow := newMem()
	slow.gate = make(chan struct{})
	p, _ := l.f.AddPort("S", "mem")
	p.SetConn(slow)
	for _, n := range []string{"A", "B", "S"} {
		l.attach(n, "lan")
	}
	// Bursts B can take (the switch has no back-pressure: a sender may
	// overrun any receiver), while S never reads at all.
	const n, burst = 5 * QueueLen, QueueLen / 4
	for i := 0; i < n; i += burst {
		for k := i; k < i+burst; k++ {
			l.send("A", eth(bcast, mac(0xa), uint32(k), 64))
		}
		for k := i; k < i+burst; k++ {
			select {
			case b := <-l.conn["B"].out:
				if s := binary.BigEndian.Uint32(b[14:]); s != uint32(k) {
					t.Fatalf("B got seq %d, want %d", s, k)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("B stalled after %d of %d frames behind a slow port", k, n)
			}
		}
	}
	ports, _ := l.f.Snapshot()
	for _, pi := range ports {
		switch pi.Name {
		case "S":
			// At most the queue and the batch in the writer's hands wait.
			if pi.Counters.Drops < n-2*QueueLen {
				t.Errorf("S drops %d, want at least %d", pi.Counters.Drops, n-2*QueueLen)
			}
		default:
			if pi.Counters.Drops != 0 {
				t.Errorf("%s drops %d, want 0", pi.Name, pi.Counters.Drops)
			}
		}
	}
	close(slow.gate)
}

// TestLiveReattach: detach and attach take effect at once while a
// stream of frames flows; nothing arrives while detached.
func TestSkipCountsDrop(t *testing.T) {
	l := newLab(t, "A", "B")
	l.attach("A", "lan")
	l.attach("B", "lan")
	l.conn["A"].skip.Store(3)
	f := eth(bcast, mac(1), 1, 60)
	l.send("A", f)
	l.expect("B", f)
	pa := l.f.Port("A")
	if d := pa.Counters().Drops; d != 3 || !pa.Connected() {
		t.Errorf("drops %d connected %v, want 3 and true", d, pa.Connected())
	}
}

// TestHooks: ingress may drop, egress may take a frame and deliver later.
func TestHooks(t *testing.T) {
	l := newLab(t, "A", "B")
	l.attach("A", "lan")
	l.attach("B", "lan")
	pa, pb := l.f.Port("A"), l.f.Port("B")
	pa.SetHooks(&Hooks{Ingress: func(p *Port, f *Frame) bool {
		if f.Bytes()[14] == 0xdd { // taken: dropped
			f.Release()
			return true
		}
		return false
	}})
	held := make(chan *Frame, 1)
	pb.SetHooks(&Hooks{Egress: func(p *Port, f *Frame) bool { held <- f; return true }})
	drop := eth(bcast, mac(1), 0xdd000000, 60)
	l.send("A", drop)
	keep := eth(bcast, mac(1), 1, 60)
	l.send("A", keep)
	var f *Frame
	select {
	case f = <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("egress hook never called")
	}
	if !bytes.Equal(f.Bytes(), keep) {
		t.Fatal("ingress hook did not drop the marked frame")
	}
	l.quiet("B")
	pb.Deliver(f)
	l.expect("B", keep)
	pa.SetHooks(nil)
	pb.SetHooks(nil)
	l.send("A", drop)
	l.expect("B", drop)
}

// TestManyPortsRace runs many ports sending at once while lans change,
// for the race detector.
func TestManyPortsRace(t *testing.T) {
	names := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	l := newLab(t, names...)
	for _, n := range names {
		l.attach(n, "lan")
	}
	// Readers that discard.
	for _, n := range names {
		c := l.conn[n]
		go func() {
			for {
				select {
				case <-c.out:
				case <-c.done:
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 2000; k++ {
				dst := mac(byte((i + k) % len(names)))
				if k%7 == 0 {
					dst = bcast
				}
				l.send(n, eth(dst, mac(byte(i)), uint32(k), 60+k%200))
			}
		}()
	}
	for k := 0; k < 200; k++ {
		n := names[k%len(names)]
		_ = l.f.Detach(n, "lan")
		_ = l.f.Attach(n, "lan2")
		_ = l.f.Attach(n, "lan")
		_ = l.f.Detach(n, "lan2")
		l.f.Snapshot()
	}
	wg.Wait()
}

// BenchmarkForward measures frames entering a port through its reader
// (batched as from a stream socket) and leaving by another port's writer
// (learnt unicast). Forwarding must not allocate.
