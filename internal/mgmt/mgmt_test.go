package mgmt

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", Default, ""},
		{"off", "", ""},
		{" OFF ", "", ""},
		{"10.9.0.0/16", "10.9.0.0/16", ""},
		{"10.9.0.1/24", "", "host bits"},
		{"10.9.0.0/30", "", "from /16 to /29"},
		{"fd00::/64", "", "IPv4"},
		{"bogus", "", "IPv4"},
	} {
		n, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, want error with %q", tc.in, err, tc.err)
			}
			continue
		}
		got := ""
		if n != nil {
			got = n.Prefix.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckAndDerive(t *testing.T) {
	n, _ := Parse("172.30.0.0/29") // .2 to .6 for guests
	if n.Host().String() != "172.30.0.1" || n.HostPrefix().String() != "172.30.0.1/29" {
		t.Fatalf("host %s", n.HostPrefix())
	}
	for ip, ok := range map[string]bool{"172.30.0.2": true, "172.30.0.6": true, "172.30.0.0": false, "172.30.0.1": false,
		"172.30.0.7": false, "172.30.0.8": false, "x": false, "::1": false} {
		if _, err := n.Check(ip); (err == nil) != ok {
			t.Errorf("Check(%s) = %v", ip, err)
		}
	}
	taken := map[netip.Addr]bool{}
	a1, _ := n.Derive("r1", func(a netip.Addr) bool { return taken[a] })
	a1again, _ := n.Derive("r1", func(a netip.Addr) bool { return taken[a] })
	if a1 != a1again {
		t.Fatalf("not stable: %s %s", a1, a1again)
	}
	for i := 0; i < 5; i++ {
		a, err := n.Derive("r1", func(a netip.Addr) bool { return taken[a] })
		if err != nil || taken[a] {
			t.Fatalf("derive %d: %s %v", i, a, err)
		}
		if _, err := n.Check(a.String()); err != nil {
			t.Fatalf("derived %s: %v", a, err)
		}
		taken[a] = true
	}
	if _, err := n.Derive("r9", func(a netip.Addr) bool { return taken[a] }); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("full network: %v", err)
	}
	if len(IfName("/a")) > 15 || IfName("/a") == IfName("/b") {
		t.Fatalf("ifnames %s %s", IfName("/a"), IfName("/b"))
	}
}

func TestParseAllow(t *testing.T) {
	a, err := ParseAllow("22, tcp/8080 udp/161")
	if err != nil || !a.TCP[22] || !a.TCP[8080] || !a.UDP[161] || a.UDP[22] {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{"0", "65536", "sctp/1", "tcp/", "x"} {
		if _, err := ParseAllow(bad); err == nil {
			t.Errorf("ParseAllow(%q) accepted", bad)
		}
	}
}

// frame builds an Ethernet+IPv4 frame; l4 starts with ports.
func frame(src, dst string, proto byte, sport, dport uint16, flags byte, frag uint16) []byte {
	b := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(b[12:], etherIPv4)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[6:], frag)
	ip[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	l4[13] = flags
	return b
}

func TestFilter(t *testing.T) {
	host := "172.30.0.1"
	f := NewFilter(netip.MustParseAddr(host), Allow{TCP: map[uint16]bool{8080: true}, UDP: map[uint16]bool{}})
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], etherARP)
	v6 := make([]byte, 60)
	binary.BigEndian.PutUint16(v6[12:], 0x86dd)
	g := "172.30.0.9"
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"arp", arp, true},
		{"ipv6", v6, false},
		{"ping the host", frame(g, host, ipICMP, 0, 0, 0, 0), true},
		{"ping through the host", frame(g, "8.8.8.8", ipICMP, 0, 0, 0, 0), false},
		{"syn to the host's sshd", frame(g, host, ipTCP, 4000, 22, tcpSYN, 0), false},
		{"syn to an allowed port", frame(g, host, ipTCP, 4000, 8080, tcpSYN, 0), true},
		{"syn-ack of a host connection", frame(g, host, ipTCP, 22, 4000, tcpSYN|tcpACK, 0), true},
		{"ack of a host connection", frame(g, host, ipTCP, 22, 4000, tcpACK, 0), true},
		{"tcp routed through the host", frame(g, "10.0.0.1", ipTCP, 22, 4000, tcpACK, 0), false},
		{"fragment", frame(g, host, ipTCP, 22, 4000, tcpACK, 0x2000), false},
		{"udp to the host", frame(g, host, ipUDP, 53, 5353, 0, 0), false},
		{"gre", frame(g, host, 47, 0, 0, 0, 0), false},
		{"runt", arp[:10], false},
	} {
		if got := f.ToHost(tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// The host asks a guest over UDP: the answer passes, others not.
	f.FromHost(frame(host, g, ipUDP, 5353, 161, 0, 0))
	if !f.ToHost(frame(g, host, ipUDP, 161, 5353, 0, 0)) {
		t.Error("answer to the host's UDP request dropped")
	}
	if f.ToHost(frame("172.30.0.10", host, ipUDP, 161, 5353, 0, 0)) {
		t.Error("UDP from another guest passed")
	}
}

func FuzzFilter(f *testing.F) {
	f.Add(frame("172.30.0.9", "172.30.0.1", ipTCP, 1, 2, tcpSYN, 0))
	f.Add([]byte{})
	flt := NewFilter(netip.MustParseAddr("172.30.0.1"), Allow{})
	f.Fuzz(func(t *testing.T, b []byte) {
		flt.FromHost(b)
		flt.ToHost(b)
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"172.30.0.0/24", "off", "22,udp/53", "tcp/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := Parse(s); err == nil && n != nil {
			if _, err := n.Check(n.Host().String()); err == nil {
				t.Fatalf("%s: the host's address accepted for a guest", s)
			}
		}
		_, _ = ParseAllow(s)
	})
}
