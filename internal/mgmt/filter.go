package mgmt

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Filter decides which frames from the management lan reach the host.
// Guests are untrusted: they may answer what the host opened, ping it,
// resolve its MAC, and open only the ports of Allow. Everything must be
// addressed to the host's own address, so the host never routes for them
// (and IPv6, fragments and other protocols are dropped). It is stateless
// for TCP (a segment other than a bare SYN opens nothing) and remembers
// the UDP flows the host started, so their answers pass.
type Filter struct {
	host  netip.Addr
	allow Allow

	mu  sync.Mutex
	udp map[udpFlow]time.Time // host-started flows, last seen
}

type udpFlow struct {
	hostPort  uint16
	guest     netip.Addr
	guestPort uint16
}

// udpTTL is how long an idle host-started UDP flow stays open.
const udpTTL = 2 * time.Minute

// maxUDPFlows bounds the table; past it the oldest are forgotten.
const maxUDPFlows = 4096

// NewFilter filters frames to host under allow.
func NewFilter(host netip.Addr, allow Allow) *Filter {
	return &Filter{host: host, allow: allow, udp: map[udpFlow]time.Time{}}
}

const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
	ipICMP    = 1
	ipTCP     = 6
	ipUDP     = 17
	tcpSYN    = 0x02
	tcpACK    = 0x10
)

// ipv4 splits an Ethernet frame holding an unfragmented IPv4 packet.
func ipv4(b []byte) (src, dst netip.Addr, proto byte, l4 []byte, ok bool) {
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:14]) != etherIPv4 {
		return
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // MF or an offset
		return
	}
	src = netip.AddrFrom4([4]byte(ip[12:16]))
	dst = netip.AddrFrom4([4]byte(ip[16:20]))
	return src, dst, ip[9], ip[ihl:], true
}

// ToHost tells whether a frame from the lan may reach the host.
func (f *Filter) ToHost(b []byte) bool {
	if len(b) >= 14 && binary.BigEndian.Uint16(b[12:14]) == etherARP {
		return true
	}
	src, dst, proto, l4, ok := ipv4(b)
	if !ok || dst != f.host {
		return false
	}
	switch proto {
	case ipICMP:
		return true
	case ipTCP:
		if len(l4) < 14 {
			return false
		}
		flags := l4[13]
		if flags&tcpSYN != 0 && flags&tcpACK == 0 {
			return f.allow.TCP[binary.BigEndian.Uint16(l4[2:4])]
		}
		return true
	case ipUDP:
		if len(l4) < 8 {
			return false
		}
		sport, dport := binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		if f.allow.UDP[dport] {
			return true
		}
		fl := udpFlow{hostPort: dport, guest: src, guestPort: sport}
		f.mu.Lock()
		defer f.mu.Unlock()
		seen, ok := f.udp[fl]
		return ok && time.Since(seen) < udpTTL
	}
	return false
}

// FromHost notes the UDP flows the host starts, so answers may come back.
func (f *Filter) FromHost(b []byte) {
	src, dst, proto, l4, ok := ipv4(b)
	if !ok || proto != ipUDP || src != f.host || len(l4) < 8 {
		return
	}
	fl := udpFlow{hostPort: binary.BigEndian.Uint16(l4[0:2]), guest: dst, guestPort: binary.BigEndian.Uint16(l4[2:4])}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.udp[fl]; !ok && len(f.udp) >= maxUDPFlows {
		for k, t := range f.udp {
			if now.Sub(t) >= udpTTL || len(f.udp) >= maxUDPFlows {
				delete(f.udp, k)
			}
		}
	}
	f.udp[fl] = now
}
