package fabric

import (
	"testing"
	"time"
)

// TestLinkDown: a port whose link is down neither sends into its lans nor
// receives from them; each such frame counts as a drop on it; up again,
// frames flow both ways.
func TestLinkDown(t *testing.T) {
	l := newLab(t, "A", "B", "C")
	for _, p := range []string{"A", "B", "C"} {
		l.attach(p, "lan")
	}
	a := l.f.Port("A")
	a.SetLinkDown(true)
	if !a.LinkDown() {
		t.Fatal("LinkDown is false after SetLinkDown(true)")
	}
	drops := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for a.Counters().Drops < n {
			if time.Now().After(deadline) {
				t.Fatalf("A counts %d drops, want %d", a.Counters().Drops, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// From A: dropped at once, nobody gets it.
	l.send("A", eth(bcast, mac(0xa), 1, 60))
	drops(1)
	// From B: C gets it, A does not.
	fb := eth(bcast, mac(0xb), 2, 60)
	l.send("B", fb)
	l.expect("C", fb)
	drops(2)
	for _, p := range []string{"A", "B", "C"} {
		if n := len(l.conn[p].out); n != 0 {
			t.Fatalf("port %s received %d frames while A was down", p, n)
		}
	}
	a.SetLinkDown(false)
	fb = eth(bcast, mac(0xb), 3, 60)
	l.send("B", fb)
	l.expect("A", fb)
	l.expect("C", fb)
	fa := eth(bcast, mac(0xa), 4, 60)
	l.send("A", fa)
	l.expect("B", fa)
	l.expect("C", fa)
}
