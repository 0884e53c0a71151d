package tux

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"cloonix/internal/proto"
)

// The slirp gateway leads to the host (DESIGN section 9): a connection to
// the gateway reaches the host's loopback, and any other destination is
// dialled by this helper, the host's own addresses included. Guests are
// untrusted, so hostGuard drops, before gvisor sees them, the guest's
// TCP/UDP packets to a host address (loopback, the gateway, the host's
// interfaces, or what the NAT maps to them) on a port the lab itself
// listens on (the switch's control port, graph pages: the records under
// work_dir/listeners), or, with <slirp_host_ports>, on any port not in
// that allow-list. gvisor-tap-vsock has no hook for its dials, hence this
// filter on the frames (docs/security.md).

type hostGuard struct {
	plan      *SlirpPlan
	nat       map[[4]byte]net.IP // guest-side address -> host-side
	allow     proto.PortSet      // nil: every port but the lab's own
	listeners *os.File           // dir of the lab's listener records, opened before dropping root

	mu        sync.Mutex
	labPorts  map[int]bool
	labAt     time.Time
	labMtime  time.Time
	localIPs  map[[4]byte]bool
	localAt   time.Time
	dropped   atomic.Uint64
	lastLog   time.Time
	logf      func(format string, args ...any)
	refreshes int // for tests: how often the records were read
}

func newHostGuard(plan *SlirpPlan, nat map[string]string, allow proto.PortSet, listeners string, logf func(string, ...any)) *hostGuard {
	g := &hostGuard{plan: plan, nat: map[[4]byte]net.IP{}, allow: allow, logf: logf}
	if listeners != "" {
		// Opened now, read later through the descriptor: the helper
		// runs as nobody and could not open the switch's dir then.
		_ = os.Mkdir(listeners, 0o700)
		g.listeners, _ = os.Open(listeners)
	}
	for from, to := range nat {
		if f, t := net.ParseIP(from).To4(), net.ParseIP(to).To4(); f != nil && t != nil {
			g.nat[[4]byte(f)] = t
		}
	}
	return g
}

const guardTTL = time.Second

// isHost tells whether ip (after NAT) is this host.
func (g *hostGuard) isHost(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsUnspecified() || ip[0] == 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.localIPs == nil || time.Since(g.localAt) > guardTTL {
		g.localIPs = map[[4]byte]bool{}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
					g.localIPs[[4]byte(n.IP.To4())] = true
				}
			}
		}
		g.localAt = time.Now()
	}
	return g.localIPs[[4]byte(ip.To4())]
}

// labPort tells whether a lab process listens on port. The records are
// read again whenever their folder changed (its mtime, read through the
// open descriptor), so a graph page is refused from the moment it
// registered, and at least every guardTTL to forget dead processes.
func (g *hostGuard) labPort(port int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	var mtime time.Time
	if g.listeners != nil {
		if fi, err := g.listeners.Stat(); err == nil {
			mtime = fi.ModTime()
		}
	}
	// File times are coarse (a clock tick): a change made in the same tick
	// as the last read keeps the mtime, so a read that close to the last
	// change is not trusted.
	settled := g.labAt.Sub(g.labMtime) > 50*time.Millisecond
	if g.labPorts == nil || !mtime.Equal(g.labMtime) || !settled || time.Since(g.labAt) > guardTTL {
		g.labPorts = proto.ListenerPortsIn(g.listeners)
		g.labAt, g.labMtime = time.Now(), mtime
		g.refreshes++
	}
	return g.labPorts[port]
}

// pass decides on one Ethernet frame from the guests.
func (g *hostGuard) pass(f []byte) bool {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return true // not IPv4: gvisor here speaks IPv4 only
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return true // gvisor drops it as malformed
	}
	proto := ip[9]
	if proto != 6 && proto != 17 {
		return true
	}
	dst := net.IP(append([]byte(nil), ip[16:20]...))
	guestDst := [4]byte(dst)
	if to, ok := g.nat[guestDst]; ok {
		dst = to
	}
	if !g.isHost(dst) {
		return true
	}
	frag := binary.BigEndian.Uint16(ip[6:8])
	if frag&0x3fff != 0 || len(ip) < ihl+4 {
		return false // a fragment could hide its port: none go to the host
	}
	port := int(binary.BigEndian.Uint16(ip[ihl+2 : ihl+4]))
	gw := net.IP(guestDst[:])
	if port == 53 && (gw.Equal(g.plan.Gateway) || gw.Equal(g.plan.DNS)) {
		return true // the slirp's own DNS
	}
	if g.allow != nil {
		return g.allow.Has(port)
	}
	return !g.labPort(port)
}

func (g *hostGuard) drop(f []byte) {
	n := g.dropped.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.logf != nil && time.Since(g.lastLog) > 10*time.Second {
		g.lastLog = time.Now()
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		port := 0
		if len(ip) >= ihl+4 {
			port = int(binary.BigEndian.Uint16(ip[ihl+2 : ihl+4]))
		}
		g.logf("slirp: refused a guest's packet to host %s port %d (a lab listener or not in <slirp_host_ports>; %d refused so far)", net.IP(ip[16:20]), port, n)
	}
}

// guardConn is the switch connection as the virtual network sees it:
// frames from the switch (QEMU stream framing) pass through the guard.
type guardConn struct {
	net.Conn
	g   *hostGuard
	buf []byte // framed bytes ready for Read
	off int
}

// maxFrame bounds a frame from the switch (jumbo frames included).
const maxFrame = 65535 + 14

func (c *guardConn) Read(p []byte) (int, error) {
	for c.off >= len(c.buf) {
		var hdr [4]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return 0, fmt.Errorf("frame of %d bytes from the switch", n)
		}
		if cap(c.buf) < 4+int(n) {
			c.buf = make([]byte, 4+int(n))
		}
		c.buf = c.buf[:4+int(n)]
		copy(c.buf, hdr[:])
		if _, err := io.ReadFull(c.Conn, c.buf[4:]); err != nil {
			return 0, err
		}
		c.off = 0
		if !c.g.pass(c.buf[4:]) {
			c.g.drop(c.buf[4:])
			c.buf = c.buf[:0]
		}
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}
