package fabric

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Ports and lans that come and go while frames flow.

func TestLiveReattach(t *testing.T) {
	l := newLab(t, "A", "B")
	l.attach("A", "lan")
	l.attach("B", "lan")
	stop := make(chan struct{})
	var sent atomic.Uint32
	go func() {
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Unicast to B: exercises learnt MACs across detach.
			l.send("A", eth(mac(0xb), mac(0xa), i, 64))
			sent.Store(i)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	defer close(stop)
	l.send("B", eth(bcast, mac(0xb), 0, 64)) // B's MAC is learnt
	waitFrom := func(min uint32) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case b := <-l.conn["B"].out:
				if binary.BigEndian.Uint32(b[14:]) > min {
					return
				}
			case <-deadline:
				t.Fatalf("B gets no frames after seq %d", min)
			}
		}
	}
	for round := 0; round < 5; round++ {
		waitFrom(sent.Load())
		if err := l.f.Detach("B", "lan"); err != nil {
			t.Fatal(err)
		}
		// Frames already queued may still land; nothing sent after does.
		mark := sent.Load() + 1
		time.Sleep(30 * time.Millisecond)
	drain:
		for {
			select {
			case b := <-l.conn["B"].out:
				if s := binary.BigEndian.Uint32(b[14:]); s > mark {
					t.Fatalf("round %d: B got seq %d sent after its detach (mark %d)", round, s, mark)
				}
			case <-time.After(20 * time.Millisecond):
				break drain
			}
		}
		if err := l.f.Attach("B", "lan"); err != nil {
			t.Fatal(err)
		}
		waitFrom(sent.Load())
	}
}

// TestStaleMAC: a MAC learnt for a port that has left the lan (a detach
// racing a frame) never steers traffic to it.
func TestStaleMAC(t *testing.T) {
	l := newLab(t, "A", "B", "C")
	for _, n := range []string{"A", "B", "C"} {
		l.attach(n, "lan")
	}
	pb := l.f.Port("B")
	lan := l.f.lans["lan"]
	if err := l.f.Detach("B", "lan"); err != nil {
		t.Fatal(err)
	}
	mb := mac(0xb)
	lan.learn(macKey(append(mb[:], 0, 0)), pb, l.f.now.Load()) // the late learn
	f := eth(mac(0xb), mac(0xa), 1, 60)
	l.send("A", f)
	l.expect("C", f)
	l.quiet("B")
}

// TestLanLifecycle: lans made by attach go with their last port, explicit
// ones stay; errors change nothing.
func TestLanLifecycle(t *testing.T) {
	l := newLab(t, "A", "B")
	l.attach("A", "auto")
	if err := l.f.Attach("A", "auto"); err == nil {
		t.Error("attaching twice succeeded")
	}
	if err := l.f.Detach("A", "auto"); err != nil {
		t.Fatal(err)
	}
	if l.f.HasLan("auto") {
		t.Error("implicit lan survived its last port")
	}
	if err := l.f.AddLan("kept"); err != nil {
		t.Fatal(err)
	}
	if err := l.f.AddLan("kept"); !errors.Is(err, ErrExists) {
		t.Errorf("AddLan twice: %v", err)
	}
	l.attach("A", "kept")
	l.attach("B", "kept")
	if err := l.f.Detach("A", "kept"); err != nil {
		t.Fatal(err)
	}
	if err := l.f.Detach("A", "kept"); err == nil {
		t.Error("detaching twice succeeded")
	}
	if err := l.f.Detach("nope", "kept"); !errors.Is(err, ErrNotFound) {
		t.Errorf("detach unknown port: %v", err)
	}
	if err := l.f.Attach("nope", "kept"); !errors.Is(err, ErrNotFound) {
		t.Errorf("attach unknown port: %v", err)
	}
	if l.f.HasLan("nope") {
		t.Error("failed attach created a lan")
	}
	if err := l.f.DelLan("kept"); err != nil {
		t.Fatal(err)
	}
	if err := l.f.DelLan("kept"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DelLan twice: %v", err)
	}
	ports, lans := l.f.Snapshot()
	if len(lans) != 0 {
		t.Errorf("lans left: %+v", lans)
	}
	for _, p := range ports {
		if len(p.Lans) != 0 {
			t.Errorf("port %s still on %v", p.Name, p.Lans)
		}
	}
	if _, err := l.f.AddPort("A", "mem"); !errors.Is(err, ErrExists) {
		t.Errorf("AddPort twice: %v", err)
	}
	if err := l.f.DelPort("A"); err != nil {
		t.Fatal(err)
	}
	if err := l.f.DelPort("A"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DelPort twice: %v", err)
	}
}

// TestReconnect: a new peer replaces the old one; OnConn reports the
// port up once and down when the last peer leaves.
func TestReconnect(t *testing.T) {
	f := New()
	defer f.Close()
	var mu sync.Mutex
	var evs []string
	f.OnConn = func(p string, up bool) {
		mu.Lock()
		evs = append(evs, fmt.Sprintf("%s %v", p, up))
		mu.Unlock()
	}
	p, _ := f.AddPort("A", "mem")
	q, _ := f.AddPort("B", "mem")
	_ = f.Attach("A", "lan")
	_ = f.Attach("B", "lan")
	c1, c2, cb := newMem(), newMem(), newMem()
	q.SetConn(cb)
	p.SetConn(c1)
	p.SetConn(c2) // replaces c1
	select {
	case <-c1.done:
	case <-time.After(time.Second):
		t.Fatal("old peer not closed")
	}
	fr := eth(bcast, mac(2), 1, 60)
	cb.in <- fr
	select {
	case got := <-c2.out:
		if !bytes.Equal(got, fr) {
			t.Fatal("wrong frame")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("new peer gets nothing")
	}
	c2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Connected() {
		t.Fatal("port still connected after its peer left")
	}
	// With no peer, frames to the port are dropped and counted there.
	cb.in <- fr
	deadline = time.Now().Add(5 * time.Second)
	for p.Counters().Drops == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Counters().Drops != 1 {
		t.Errorf("drops %d, want 1", p.Counters().Drops)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"B true", "A true", "A false"}
	if fmt.Sprint(evs) != fmt.Sprint(want) {
		t.Errorf("OnConn %v, want %v", evs, want)
	}
}

// TestSkipCountsDrop: a frame the transport refuses counts a drop and
// the peer stays connected.
