package tux

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// sockaddrOf and addrPort agree with each other, and with the kernel.
func TestSockaddr(t *testing.T) {
	for _, s := range []string{"10.88.0.2:4789", "127.0.0.1:1", "[2001:db8::1]:65535", "[::1]:4789"} {
		ap := netip.MustParseAddrPort(s)
		sa := sockaddrOf(ap)
		if got := sa.addrPort(sa.n); got != ap {
			t.Errorf("%s: back as %s", s, got)
		}
		if got := sa.addrPort(sa.n - 1); got.IsValid() {
			t.Errorf("%s: a short address read as %s", s, got)
		}
	}
	// An IPv4-mapped sender on an IPv6 socket reads as IPv4.
	sa := sockaddrOf(netip.MustParseAddrPort("[::ffff:10.0.0.1]:7"))
	if got := sa.addrPort(sa.n); got != netip.MustParseAddrPort("10.0.0.1:7") {
		t.Errorf("mapped: %s", got)
	}
}

// A tux whose remote is ::1 and that binds no address sends to itself:
// over IPv6, frames and a super frame (GSO and GRO) come back whole.
func TestVXLANIPv6Loop(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	c.Close()
	h, a := vxStart(t, "::1", "7", vxItoa(port), "")
	for _, n := range []int{14, 1514, 9014} {
		f := vxTestFrame(2, 1, n)
		vxSend(t, a, f)
		if g := vxRecv(t, a); !bytes.Equal(g, f) {
			t.Fatalf("%d bytes: got %d bytes, different", n, len(g))
		}
	}
	payload := bytes.Repeat([]byte("cloonix "), 5000)
	vxSend(t, a, vxTCPFrame(payload))
	var got []byte
	for len(got) < len(payload) {
		f := vxRecv(t, a)
		ti, ok := parseTCP(f)
		if !ok {
			t.Fatal("a segment is not TCP")
		}
		got = append(got, f[ti.hdrEnd():]...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload differs")
	}
	if s := h.stats(); s.Drops != 0 || h.gsoSends.Load() == 0 {
		t.Errorf("stats %+v, GSO sends %d", s, h.gsoSends.Load())
	}
}
