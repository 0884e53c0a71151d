package tux

import (
	"bytes"
	"testing"

	"cloonix/internal/wire"
)

// The conn adds the sources it receives from to the switch's MAC set
// (so a tap hands it super frames whole), and merges segments only
// toward a MAC in that set: a guest's port gets them as they were sent.
func TestVXLANMergeOnlyTowardSuperTakers(t *testing.T) {
	port := vxFreePort(t)
	macsA, macsB := &wire.MACSet{}, &wire.MACSet{}
	_, a := vxStartWith(t, macsA, "127.0.0.10", "12", vxItoa(port), "127.0.0.9")
	_, b := vxStartWith(t, macsB, "127.0.0.9", "12", vxItoa(port), "127.0.0.10")
	toB := vxTCPFrame(bytes.Repeat([]byte{7}, 30000)) // 02:..:01 to 02:..:02
	if macsA.TakesSuper(toB) {
		t.Fatal("A's set has B's MAC before B sent anything")
	}
	vxSend(t, b, vxTestFrame(1, 2, 60))
	vxRecv(t, a)
	if !macsA.TakesSuper(toB) {
		t.Error("A did not learn the MAC it received from")
	}
	// B's set lacks 02:..:02: no super frame reaches it.
	vxSend(t, a, toB)
	got := 0
	for got < 30000 {
		f := vxRecv(t, b)
		if len(f) > StdFrame {
			t.Fatalf("a %d-byte frame toward a MAC that takes no super frame", len(f))
		}
		ti, ok := parseTCP(f)
		if !ok || !vxChecksumsOK(f, ti) {
			t.Fatal("a segment is not TCP or has bad checksums")
		}
		got += len(f) - ti.hdrEnd()
	}
}
