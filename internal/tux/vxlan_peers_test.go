package tux

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"cloonix/internal/wire"
)

// TestVXLANPeersAllowList (issue 15, finding 12): with --peers, a
// remote's IP is not enough: a datagram from another UDP port of that IP
// is dropped as a foreign source; one from the listed port arrives.
func TestVXLANPeersAllowList(t *testing.T) {
	port := vxFreePort(t)
	cfg, err := ParseVXLAN("127.0.0.3", "7", vxItoa(port), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Peers, err = ParsePeers("127.0.0.3:"+vxItoa(port), cfg.Remotes); err != nil {
		t.Fatal(err)
	}
	h, err := newVXLAN(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	go vxPump(newVXConn(h, b, &wire.MACSet{}), b) // the switch's side, as in vxStart
	defer func() { a.Close(); h.conn.Close() }()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	otherPort, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer otherPort.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	dg := func(f []byte) []byte {
		d := make([]byte, VXLANHdrLen+len(f))
		putVXLANHdr(d, 7)
		copy(d[VXLANHdrLen:], f)
		return d
	}
	if _, err := otherPort.WriteToUDP(dg(vxTestFrame(1, 3, 60)), dst); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.WriteToUDP(dg(vxTestFrame(1, 3, 61)), dst); err != nil {
		t.Fatal(err)
	}
	if g := vxRecv(t, a); len(g) != 61 {
		t.Fatalf("got a %d-byte frame; want only the listed peer's 61-byte one", len(g))
	}
	if s := h.stats(); !strings.Contains(s.State, "1 source") {
		t.Errorf("stats %+v: want the other port's datagram dropped as a foreign source", s)
	}
}

func TestParsePeers(t *testing.T) {
	remotes := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	for _, c := range []struct {
		in, err string
		n       int
	}{
		{"", "", 0}, {"192.0.2.1:4789", "", 1}, {"192.0.2.1:4789, [2001:db8::1]:4789", "", 2},
		{"192.0.2.2:4789", "not one of the remotes", 0}, {"192.0.2.1", "IP:PORT", 0}, {"192.0.2.1:0", "IP:PORT", 0},
	} {
		p, err := ParsePeers(c.in, remotes)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) || len(p) != c.n {
			t.Errorf("%q: %v %v", c.in, p, err)
		}
	}
}

func FuzzParsePeers(f *testing.F) {
	f.Add("192.0.2.1:4789,[2001:db8::1]:1")
	remotes := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeers(s, remotes)
		if err != nil {
			return
		}
		for _, a := range p {
			if a.Port() == 0 || (a.Addr() != remotes[0] && a.Addr() != remotes[1]) {
				t.Fatalf("%q gave %v", s, a)
			}
		}
	})
}
