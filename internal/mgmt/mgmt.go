// Package mgmt is the management network's plan (DESIGN section 10):
// one lan of the switch that every guest joins with mgmt0, reached by
// the host through a tap interface the switch owns (package hostif) at
// the network's .1. Addresses are derived from guest names (or given);
// the host side filters what guests may send to the host (filter.go).
// It imports no cloonix package: the config checks <mgmt> with it.
package mgmt

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Default is the management network when the config says nothing.
const Default = "172.30.0.0/24"

// Off in <mgmt> switches the management network off.
const Off = "off"

// Net is one management network: its prefix, the host at .1.
type Net struct {
	Prefix netip.Prefix
}

// Parse reads <mgmt>: an IPv4 network of /16 to /29, or "off" (nil Net).
func Parse(s string) (*Net, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = Default
	}
	if strings.EqualFold(s, Off) {
		return nil, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("<mgmt> %q: want an IPv4 network such as %s, or off", s, Default)
	}
	if p.Bits() < 16 || p.Bits() > 29 {
		return nil, fmt.Errorf("<mgmt> %s: want a prefix length from /16 to /29", s)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("<mgmt> %s: host bits are set; did you mean %s?", s, p.Masked())
	}
	return &Net{Prefix: p}, nil
}

// size is the number of addresses in the network.
func (n *Net) size() uint32 { return 1 << (32 - n.Prefix.Bits()) }

func (n *Net) nth(i uint32) netip.Addr {
	b := n.Prefix.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + i
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// Host is the host's address, the network's .1.
func (n *Net) Host() netip.Addr { return n.nth(1) }

// HostPrefix is the host's address with the network's length.
func (n *Net) HostPrefix() netip.Prefix { return netip.PrefixFrom(n.Host(), n.Prefix.Bits()) }

// WithLen is a guest address as "ADDR/LEN".
func (n *Net) WithLen(a netip.Addr) string { return netip.PrefixFrom(a, n.Prefix.Bits()).String() }

// Check validates an address given for a guest (--mgmt-ip, <mgmt_ip>):
// inside the network, and neither its first, the host's, nor broadcast.
func (n *Net) Check(ip string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("management address %q: want an IPv4 address in %s", ip, n.Prefix)
	}
	if !n.Prefix.Contains(a) {
		return netip.Addr{}, fmt.Errorf("management address %s is outside the management network %s (<mgmt> in the config)", a, n.Prefix)
	}
	if a == n.Prefix.Addr() || a == n.Host() || a == n.nth(n.size()-1) {
		return netip.Addr{}, fmt.Errorf("management address %s is the network's, the host's (.1) or broadcast; choose another in %s", a, n.Prefix)
	}
	return a, nil
}

// Derive gives a guest its address from its name: stable across runs,
// the next free one when another guest holds it. taken tells which are
// held; the network's first, .1 and broadcast never are given.
func (n *Net) Derive(name string, taken func(netip.Addr) bool) (netip.Addr, error) {
	h := sha256.Sum256([]byte("cloonix/mgmt/" + name))
	usable := n.size() - 3 // .0, .1 and broadcast
	start := binary.BigEndian.Uint32(h[:4]) % usable
	for i := uint32(0); i < usable; i++ {
		a := n.nth(2 + (start+i)%usable)
		if !taken(a) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("the management network %s is full; give a larger one in <mgmt>", n.Prefix)
}

// IfName is the host interface of the switch whose work_dir is given:
// unique per switch, so that switches side by side each have theirs.
func IfName(workDir string) string {
	h := sha256.Sum256([]byte(workDir))
	return fmt.Sprintf("clxm%x", h[:4])
}

// Allow is what guests may open on the host through the management
// network: TCP and UDP ports (<mgmt_allow>, e.g. "8080 udp/161").
type Allow struct {
	TCP, UDP map[uint16]bool
}

// ParseAllow reads <mgmt_allow>: ports separated by spaces or commas,
// each PORT (TCP), tcp/PORT or udp/PORT.
func ParseAllow(s string) (Allow, error) {
	a := Allow{TCP: map[uint16]bool{}, UDP: map[uint16]bool{}}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		proto, port, ok := strings.Cut(w, "/")
		if !ok {
			proto, port = "tcp", w
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return a, fmt.Errorf("<mgmt_allow> %q: want PORT, tcp/PORT or udp/PORT (1..65535)", w)
		}
		switch strings.ToLower(proto) {
		case "tcp":
			a.TCP[uint16(n)] = true
		case "udp":
			a.UDP[uint16(n)] = true
		default:
			return a, fmt.Errorf("<mgmt_allow> %q: protocol %q: use tcp or udp", w, proto)
		}
	}
	return a, nil
}
