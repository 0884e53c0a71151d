package fabric_test

// Impairments and captures measured end to end: two (or three) raw stream
// ports on real unix sockets, driven by this test as QEMU would drive them.

import (
	"bufio"
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/netem"
	"cloonix/internal/wire"
)

// peer is the far end of one port: it writes length-prefixed frames and
// hands what it receives to a channel.
type peer struct {
	t    *testing.T
	name string
	mac  [6]byte
	c    net.Conn
	wmu  sync.Mutex
	w    *bufio.Writer
	rx   chan []byte
	echo bool // send every received frame back to its source
}

type rig struct {
	t     *testing.T
	f     *fabric.Fabric
	peers map[string]*peer
}

// newRig makes one stream port per name on lan "lan" and connects a peer.
func newRig(t *testing.T, names ...string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, f: fabric.New(), peers: map[string]*peer{}}
	t.Cleanup(r.f.Close)
	for i, n := range names {
		l, err := wire.ListenStream(filepath.Join(dir, n+".sock"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.f.AddPort(n, "stream")
		if err != nil {
			t.Fatal(err)
		}
		p.Serve(l)
		if err := r.f.Attach(n, "lan"); err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		pe := &peer{t: t, name: n, mac: [6]byte{0x52, 0x54, 0, 0, 0, byte(i + 1)}, c: c, w: bufio.NewWriter(c), rx: make(chan []byte, 1<<16)}
		t.Cleanup(func() { c.Close() })
		go pe.read()
		r.peers[n] = pe
		deadline := time.Now().Add(5 * time.Second)
		for !p.Connected() {
			if time.Now().After(deadline) {
				t.Fatalf("port %s never saw its peer", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Teach the lan every MAC so unicast goes only where it should.
	for _, pe := range r.peers {
		pe.send(frame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, pe.mac, 0, 60))
	}
	// Each peer gets the others' broadcasts: wait for them all, so none
	// arrives in the middle of a test (a fixed sleep let one through on
	// a loaded machine: "B received 1001 of 1000").
	for _, pe := range r.peers {
		for i := 0; i < len(names)-1; i++ {
			select {
			case <-pe.rx:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the lan's MAC-teaching broadcasts never arrived", pe.name)
			}
		}
		pe.drain()
	}
	return r
}

func (r *rig) impair(port, spec string) {
	r.t.Helper()
	p, err := netem.Parse(spec)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.f.SetImpair(port, p); err != nil {
		r.t.Fatal(err)
	}
}

func (pe *peer) read() {
	br := bufio.NewReaderSize(pe.c, 1<<16)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		if pe.echo {
			e := append([]byte(nil), b...)
			copy(e[0:6], b[6:12])
			copy(e[6:12], pe.mac[:])
			pe.send(e)
			continue
		}
		select {
		case pe.rx <- b:
		default:
			pe.t.Errorf("%s: test receive buffer full", pe.name)
			return
		}
	}
}

func (pe *peer) send(b []byte) {
	pe.wmu.Lock()
	defer pe.wmu.Unlock()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	pe.w.Write(hdr[:])
	pe.w.Write(b)
	if err := pe.w.Flush(); err != nil {
		pe.t.Errorf("%s: send: %v", pe.name, err)
	}
}

func (pe *peer) drain() {
	for {
		select {
		case <-pe.rx:
		default:
			return
		}
	}
}

// count receives until nothing came for quiet.
func (pe *peer) collect(quiet time.Duration) [][]byte {
	var got [][]byte
	for {
		select {
		case b := <-pe.rx:
			got = append(got, b)
		case <-time.After(quiet):
			return got
		}
	}
}

func frame(dst, src [6]byte, seq uint32, size int) []byte {
	b := make([]byte, size)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	b[12], b[13] = 0x88, 0xb5
	binary.BigEndian.PutUint32(b[14:18], seq)
	for i := 18; i < size; i++ {
		b[i] = byte(i)
	}
	return b
}

// rtt sends n frames A->B (B echoes) one at a time and returns the
// shortest round trip: an impairment sets a floor, and a loaded machine
// only adds to it (timers firing late), so the minimum is what the
// impairment did.
func (r *rig) rtt(a, b string, n int) time.Duration {
	pa, pb := r.peers[a], r.peers[b]
	pb.echo = true
	defer func() { pb.echo = false }()
	var rtts []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		pa.send(frame(pb.mac, pa.mac, uint32(i), 100))
		select {
		case <-pa.rx:
			rtts = append(rtts, time.Since(t0))
		case <-time.After(5 * time.Second):
			r.t.Fatalf("no echo for frame %d", i)
		}
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts[0]
}

func within(got, want, tol float64) bool { return math.Abs(got-want) <= tol*want }

func TestImpairDelay(t *testing.T) {
	r := newRig(t, "A", "B", "C")
	if base := r.rtt("A", "B", 20); base > 10*time.Millisecond {
		t.Fatalf("baseline round trip %v: the machine is too loaded to measure", base)
	}
	r.impair("A", "out delay=50ms")
	if got := r.rtt("A", "B", 20); !within(float64(got), float64(50*time.Millisecond), 0.10) {
		t.Errorf("out delay=50ms: round trip %v, want 50ms within 10%%", got)
	}
	// Both directions: the frame is delayed going in and coming back.
	r.impair("A", "delay=50ms")
	if got := r.rtt("A", "B", 20); !within(float64(got), float64(100*time.Millisecond), 0.10) {
		t.Errorf("delay=50ms both ways: round trip %v, want 100ms within 10%%", got)
	}
	// A port that is not impaired is not slowed.
	if got := r.rtt("C", "B", 20); got > 10*time.Millisecond {
		t.Errorf("C-B round trip %v while only A is impaired", got)
	}
	// Jitter varies the delay but keeps order.
	r.impair("A", "in delay=20ms jitter=10ms")
	pa, pb := r.peers["A"], r.peers["B"]
	for i := 0; i < 200; i++ {
		pa.send(frame(pb.mac, pa.mac, uint32(i), 100))
	}
	got := pb.collect(300 * time.Millisecond)
	if len(got) != 200 {
		t.Fatalf("jitter: received %d of 200", len(got))
	}
	for i, b := range got {
		if seq := binary.BigEndian.Uint32(b[14:]); seq != uint32(i) {
			t.Fatalf("jitter reordered frames: position %d holds %d", i, seq)
		}
	}
	r.impair("A", "")
	if got := r.rtt("A", "B", 20); got > 10*time.Millisecond {
		t.Errorf("after clear: round trip %v", got)
	}
}

func TestImpairRate(t *testing.T) {
	r := newRig(t, "A", "B")
	r.impair("B", "out rate=10mbit")
	pa, pb := r.peers["A"], r.peers["B"]
	const size = 1000
	// Offer about 20 mbit/s for 3 s so the shaper always has a backlog.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		seq := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Catch up with 20 mbit/s of wall time, whatever the
			// scheduler's delays.
			want := int(time.Since(start).Seconds() * 20e6 / 8 / size)
			for ; seq < want; seq++ {
				pa.send(frame(pb.mac, pa.mac, uint32(seq), size))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done }()
	<-pb.rx // the first frame through: the shaper is busy from here
	t0 := time.Now()
	var n int
	for time.Since(t0) < 500*time.Millisecond {
		<-pb.rx
	}
	t1 := time.Now()
	for time.Since(t1) < 2*time.Second {
		select {
		case b := <-pb.rx:
			n += len(b)
		case <-time.After(time.Second):
			t.Fatal("traffic stopped")
		}
	}
	rate := float64(n) * 8 / time.Since(t1).Seconds()
	if !within(rate, 10e6, 0.10) {
		t.Errorf("rate=10mbit: measured %.2f mbit/s, want 10 within 10%%", rate/1e6)
	}
	_, st, _ := r.f.Impairment("B")
	if st.Overflow == 0 {
		t.Errorf("offered twice the rate but the bounded queue dropped nothing: %+v", st)
	}
	p := r.f.Port("B")
	if p.Counters().Drops < st.Overflow {
		t.Errorf("port drops %d do not include the %d queue overflows", p.Counters().Drops, st.Overflow)
	}
	t.Logf("rate=10mbit: %.2f mbit/s, %d frames dropped by the full queue", rate/1e6, st.Overflow)
}

// sendN sends n numbered frames A->B, paced so no queue overflows.
func sendN(pa, pb *peer, n, size int) {
	for i := 0; i < n; i++ {
		pa.send(frame(pb.mac, pa.mac, uint32(i), size))
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func TestImpairLoss(t *testing.T) {
	lostSet := func(seed string) (map[uint32]bool, fabric.ImpairStats) {
		r := newRig(t, "A", "B")
		r.impair("A", "in loss=20% seed="+seed)
		pa, pb := r.peers["A"], r.peers["B"]
		sendN(pa, pb, 2000, 100)
		got := pb.collect(300 * time.Millisecond)
		lost := map[uint32]bool{}
		for i := 0; i < 2000; i++ {
			lost[uint32(i)] = true
		}
		for _, b := range got {
			delete(lost, binary.BigEndian.Uint32(b[14:]))
		}
		_, st, _ := r.f.Impairment("A")
		if uint64(len(lost)) != st.Lost {
			t.Errorf("%d frames missing, the impairment counted %d", len(lost), st.Lost)
		}
		return lost, st
	}
	l1, _ := lostSet("7")
	// 2000 trials at p=0.2: mean 400, sd 17.9; 4 sd either side.
	if n := len(l1); n < 328 || n > 472 {
		t.Errorf("loss=20%% over 2000 frames lost %d, want 400 +- 72", n)
	}
	l2, _ := lostSet("7")
	if len(l1) != len(l2) {
		t.Errorf("same seed, different losses: %d then %d", len(l1), len(l2))
	}
	for k := range l1 {
		if !l2[k] {
			t.Errorf("same seed lost different frames (%d)", k)
			break
		}
	}
	l3, _ := lostSet("8")
	same := 0
	for k := range l1 {
		if l3[k] {
			same++
		}
	}
	if same == len(l1) {
		t.Error("another seed lost exactly the same frames")
	}
}

func TestImpairDupCorrupt(t *testing.T) {
	r := newRig(t, "A", "B")
	pa, pb := r.peers["A"], r.peers["B"]
	r.impair("B", "out dup=10% seed=1")
	sendN(pa, pb, 2000, 100)
	got := pb.collect(300 * time.Millisecond)
	_, st, _ := r.f.Impairment("B")
	extra := len(got) - 2000
	if uint64(extra) != st.Duplicated || extra < 128 || extra > 272 {
		t.Errorf("dup=10%%: %d extra frames (counted %d), want 200 +- 72", extra, st.Duplicated)
	}
	seen := map[uint32]int{}
	for _, b := range got {
		seen[binary.BigEndian.Uint32(b[14:])]++
	}
	for i := uint32(0); i < 2000; i++ {
		if seen[i] < 1 || seen[i] > 2 {
			t.Fatalf("frame %d arrived %d times", i, seen[i])
		}
	}

	r.impair("B", "out corrupt=10% seed=1")
	sendN(pa, pb, 2000, 100)
	got = pb.collect(300 * time.Millisecond)
	if len(got) != 2000 {
		t.Fatalf("corrupt: received %d of 2000", len(got))
	}
	_, st, _ = r.f.Impairment("B")
	bad := 0
	for i, b := range got {
		want := frame(pb.mac, pa.mac, uint32(i), 100)
		flipped := 0
		for j := range b {
			flipped += bits.OnesCount8(b[j] ^ want[j])
		}
		if flipped > 1 {
			t.Fatalf("frame %d has %d bits flipped, want at most one", i, flipped)
		}
		if flipped == 1 {
			bad++
			for j := 0; j < 14; j++ {
				if b[j] != want[j] {
					t.Fatalf("frame %d corrupted in its Ethernet header", i)
				}
			}
		}
	}
	if uint64(bad) != st.Corrupted || bad < 128 || bad > 272 {
		t.Errorf("corrupt=10%%: %d corrupted frames (counted %d), want 200 +- 72", bad, st.Corrupted)
	}
}

func TestImpairDownClear(t *testing.T) {
	r := newRig(t, "A", "B")
	pa, pb := r.peers["A"], r.peers["B"]
	r.impair("A", "down")
	sendN(pa, pb, 50, 100)
	pb.echo = false
	if got := pb.collect(200 * time.Millisecond); len(got) != 0 {
		t.Fatalf("down: %d frames went through", len(got))
	}
	// Down both ways: nothing reaches A either.
	pb.send(frame(pa.mac, pb.mac, 1, 100))
	if got := pa.collect(200 * time.Millisecond); len(got) != 0 {
		t.Fatalf("down: %d frames reached A", len(got))
	}
	r.impair("A", "")
	sendN(pa, pb, 50, 100)
	if got := pb.collect(200 * time.Millisecond); len(got) != 50 {
		t.Fatalf("after clear: %d of 50 frames", len(got))
	}
	// Frames held by a long delay go out at once when it is cleared.
	r.impair("A", "delay=10s")
	sendN(pa, pb, 10, 100)
	time.Sleep(50 * time.Millisecond)
	r.impair("A", "")
	if got := pb.collect(200 * time.Millisecond); len(got) != 10 {
		t.Fatalf("clear did not release the %d delayed frames (got %d)", 10, len(got))
	}
	if p, _, _ := r.f.Impairment("A"); !p.Zero() {
		t.Errorf("after clear the port still has %v", p)
	}
	if err := r.f.SetImpair("nope", netem.Pair{}); err == nil {
		t.Error("impairing an unknown port succeeded")
	}
}

func TestImpairPortDeleted(t *testing.T) {
	r := newRig(t, "A", "B")
	r.impair("A", "delay=1s")
	pa, pb := r.peers["A"], r.peers["B"]
	sendN(pa, pb, 10, 100)
	tap, err := r.f.CapturePort("A", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.f.DelPort("A"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tap.Done():
		if tap.Reason() == "" {
			t.Error("capture ended without a reason")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("capture of a deleted port did not end")
	}
	if len(r.f.Impairments()) != 0 {
		t.Errorf("deleted port still impaired: %v", r.f.Impairments())
	}
}
