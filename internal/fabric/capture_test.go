package fabric_test

import (
	"encoding/binary"
	"testing"
	"time"

	"cloonix/internal/fabric"
)

// taken reads what a tap holds now (after a short settle).
func taken(tap *fabric.Tap) []fabric.Captured {
	var got []fabric.Captured
	for {
		select {
		case <-tap.Ready():
			got = append(got, tap.Take(nil)...)
		case <-time.After(200 * time.Millisecond):
			return got
		}
	}
}

func TestCapturePortBothWays(t *testing.T) {
	r := newRig(t, "A", "B")
	pa, pb := r.peers["A"], r.peers["B"]
	tap, err := r.f.CapturePort("A", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	pa.send(frame(pb.mac, pa.mac, 1, 80))
	pb.send(frame(pa.mac, pb.mac, 2, 90))
	got := taken(tap)
	if len(got) != 2 {
		t.Fatalf("captured %d frames, want 2", len(got))
	}
	for _, c := range got {
		seq := binary.BigEndian.Uint32(c.Frame.Bytes()[14:])
		want := map[uint32]int{1: 0, 2: 1}[seq]
		if c.Iface != want {
			t.Errorf("frame %d captured on interface %d, want %d", seq, c.Iface, want)
		}
		if c.Time == 0 || time.Since(time.Unix(0, c.Time)) > 5*time.Second {
			t.Errorf("frame %d has timestamp %d", seq, c.Time)
		}
		c.Release()
	}
	if _, err := r.f.CapturePort("nope", 0); err == nil {
		t.Error("capture of an unknown port succeeded")
	}
	if _, err := r.f.CaptureLan("nope", 0); err == nil {
		t.Error("capture of an unknown lan succeeded")
	}
}

func TestCaptureLanFollowsMembers(t *testing.T) {
	r := newRig(t, "A", "B", "C")
	pa, pb, pc := r.peers["A"], r.peers["B"], r.peers["C"]
	t1, err := r.f.CaptureLan("lan", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Close()
	t2, err := r.f.CaptureLan("lan", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Unicast and broadcast are each captured once per capture.
	pa.send(frame(pb.mac, pa.mac, 1, 80))
	pa.send(frame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, pa.mac, 2, 80))
	pc.send(frame(pa.mac, pc.mac, 3, 80))
	for i, tap := range []*fabric.Tap{t1, t2} {
		got := taken(tap)
		if len(got) != 3 {
			t.Fatalf("capture %d saw %d frames, want 3", i, len(got))
		}
		for _, c := range got {
			c.Release()
		}
	}
	t2.Close()
	// A port detached leaves the capture; one attached joins it.
	if err := r.f.Detach("C", "lan"); err != nil {
		t.Fatal(err)
	}
	if err := r.f.Attach("C", "other"); err != nil {
		t.Fatal(err)
	}
	pc.send(frame(pc.mac, pc.mac, 4, 80))
	if got := taken(t1); len(got) != 0 {
		t.Fatalf("frame on another lan captured: %d", len(got))
	}
	if err := r.f.Attach("C", "lan"); err != nil {
		t.Fatal(err)
	}
	pc.send(frame(pa.mac, pc.mac, 5, 80))
	got := taken(t1)
	if len(got) != 1 || binary.BigEndian.Uint32(got[0].Frame.Bytes()[14:]) != 5 {
		t.Fatalf("frame from a port attached later: captured %d", len(got))
	}
	got[0].Release()
}

// TestCaptureNeverSlows: a capture nobody reads loses its own frames,
// counted, while the traffic goes through whole.
func TestCaptureNeverSlows(t *testing.T) {
	r := newRig(t, "A", "B")
	pa, pb := r.peers["A"], r.peers["B"]
	tap, err := r.f.CaptureLan("lan", 16)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	sendN(pa, pb, 1000, 200)
	if got := pb.collect(300 * time.Millisecond); len(got) != 1000 {
		t.Fatalf("with a stalled capture B received %d of 1000", len(got))
	}
	if d := tap.Dropped(); d != 1000-16 {
		t.Errorf("stalled capture dropped %d, want %d", d, 1000-16)
	}
	if d := r.f.Port("B").Counters().Drops; d != 0 {
		t.Errorf("the capture cost B %d drops", d)
	}
}

// TestCaptureSeesImpairments: a port capture sees what the peer sends and
// receives; a lan capture what travels on the lan.
func TestCaptureSeesImpairments(t *testing.T) {
	r := newRig(t, "A", "B")
	pa, pb := r.peers["A"], r.peers["B"]
	r.impair("A", "in loss=100%")
	tp, err := r.f.CapturePort("A", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	tl, err := r.f.CaptureLan("lan", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	pa.send(frame(pb.mac, pa.mac, 1, 80))
	if got := taken(tp); len(got) != 1 {
		t.Errorf("port capture saw %d frames the peer sent, want 1", len(got))
	}
	if got := taken(tl); len(got) != 0 {
		t.Errorf("lan capture saw %d frames lost before the lan, want 0", len(got))
	}
}
