package tux

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// The vxlan helper: the lans its port is on, carried as standard VXLAN
// (RFC 7348, vxlan_wire.go) over one UDP socket to one or more remotes.
// Broadcast, multicast and unknown unicast go to every remote (head-end
// replication); the helper learns behind which remote each source MAC
// lives and sends known unicast there only. It needs nothing but a UDP
// socket: no tap, no capability (ports below 1024 aside).
//
// The socket sends from the port it listens on (as Linux does when
// told `srcport P P`), so a remote may check it. Datagrams are accepted
// from the listed remotes only, on the tux's VNI; anything else is
// dropped and counted by reason (see stats). Frames go out and come in
// batches (sendmmsg/recvmmsg) so a burst costs one system call, with UDP
// GSO and GRO where the kernel has them, and TCP segments received back
// to back are merged into super frames (vxlan_gro.go).
// CLOONIX_VXLAN_NO_OFFLOAD=1 in the switch's environment turns GSO, GRO
// and merging off.

// Tuning of the helper.
const (
	vxBatch     = 32                // messages per recvmmsg
	vxBufSize   = 65536             // per datagram: no UDP payload is longer
	vxSockBuf   = 4 << 20           // socket buffers asked for
	vxMACAge    = 300 * time.Second // as Linux's vxlan ageing
	vxSweep     = 30 * time.Second
	vxErrRecent = 10 * time.Second // a send error shows in the state this long
	vxMaxMACs   = 1 << 16          // learnt MACs at most (a remote cannot grow it forever)
)

// Drop reasons, in the order the state shows them.
const (
	vxDropShort     = iota // datagram too short for VXLAN and an Ethernet header
	vxDropFlags            // I flag clear
	vxDropVNI              // another VNI
	vxDropSource           // from an address that is not a remote
	vxDropTruncated        // longer than the receive buffer
	vxDropOversize         // a frame from the switch too long for one datagram
	vxDropSend             // the kernel refused to send (no route, ...)
	vxDropReasons
)

var vxDropNames = [vxDropReasons]string{"short", "flags", "vni", "source", "truncated", "oversize", "send"}

type vxlanHelper struct {
	cfg     VXLANConfig
	conn    *net.UDPConn
	rc      syscall.RawConn // the socket's, for the raw batch calls (rawio.go)
	remotes []*net.UDPAddr
	// sockaddrs are the remotes' addresses as sendmmsg takes them.
	sockaddrs []sockaddr
	maxLen    int // longest frame that fits one datagram

	macs  sync.Map // uint64 MAC -> *vxMAC (only with several remotes)
	nmacs atomic.Int64

	gsoOK    bool // UDP GSO sends work (fromSwitch only)
	gsoLimit int  // largest datagram sent with GSO
	gro      bool // the socket coalesces received datagrams (UDP_GRO)
	innerMTU int  // IP MTU super frames are cut to (see pathMTU)

	gsoSends, groRecvs atomic.Uint64 // offloaded sends and receives (tests)

	owner atomic.Pointer[vxConn] // the switch-side conn that reads (vxlan_conn.go)

	// The receiving and the sending goroutine each count on their own
	// cache line (adjacent counters bounced between the two CPUs).
	_        cpu.CacheLinePad
	rxF, rxB atomic.Uint64
	_        cpu.CacheLinePad
	txF, txB atomic.Uint64
	_        cpu.CacheLinePad
	drops    [vxDropReasons]atomic.Uint64
	lastErr  atomic.Pointer[vxErr]
}

type vxMAC struct {
	remote atomic.Int32
	seen   atomic.Int64 // unix nanoseconds
}

type vxErr struct {
	at  time.Time
	msg string
}

// setupVXLAN is the helper's side: it checks the options and then only
// waits, since the switch sends and receives the datagrams itself
// (vxlan_conn.go), with no process hop per frame.
func setupVXLAN(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	if _, err := parseVXLANArgs(args); err != nil {
		return nil, nil, err
	}
	// No info: list shows the options given, which fconf save writes back.
	return idleHelper{}, nil, nil
}

// parseVXLANArgs reads the helper flags (VXLANConfig.Args).
func parseVXLANArgs(args []string) (VXLANConfig, error) {
	fs := flag.NewFlagSet("vxlan", flag.ContinueOnError)
	remote := fs.String("remote", "", "IP[,IP...] of the other ends")
	vni := fs.String("vni", "", "VXLAN network identifier, 0..16777215")
	port := fs.String("port", "", "UDP port to listen on and send to (default 4789)")
	local := fs.String("local", "", "local address to bind (default: any)")
	peers := fs.String("peers", "", "IP:PORT[,IP:PORT...]: the only sources frames are taken from")
	if err := fs.Parse(args); err != nil {
		return VXLANConfig{}, err
	}
	cfg, err := ParseVXLAN(*remote, *vni, *port, *local)
	if err != nil {
		return VXLANConfig{}, err
	}
	cfg.Peers, err = ParsePeers(*peers, cfg.Remotes)
	return cfg, err
}

// idleHelper is a helper whose switch moves the frames itself: it waits
// for the switch to close its socket.
type idleHelper struct{}

func (idleHelper) handle(r Request) error { return fmt.Errorf("this tux has no %q", r.Op) }
func (idleHelper) stats() Stats           { return Stats{State: "up"} }
func (idleHelper) serve(sw net.Conn) error {
	_, err := io.Copy(io.Discard, sw)
	sw.Close()
	return err
}

// newVXLAN opens the socket; its errors say what to change.
func newVXLAN(cfg VXLANConfig) (*vxlanHelper, error) {
	network := "udp4"
	if cfg.V6() {
		network = "udp6"
	}
	laddr := &net.UDPAddr{Port: int(cfg.Port)}
	if cfg.Local.IsValid() {
		laddr.IP = cfg.Local.AsSlice()
	}
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, vxlanBindError(cfg, laddr, err)
	}
	_ = conn.SetReadBuffer(vxSockBuf)
	_ = conn.SetWriteBuffer(vxSockBuf)
	h := &vxlanHelper{cfg: cfg, conn: conn, maxLen: maxUDPPayloadV4 - VXLANHdrLen, gsoOK: true, gsoLimit: 65535}
	if h.rc, err = conn.SyscallConn(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("vxlan: the UDP socket: %v", err)
	}
	if os.Getenv("CLOONIX_VXLAN_NO_OFFLOAD") != "" {
		h.gsoOK = false // to compare, and a way out should a kernel misbehave
	} else {
		_ = h.rc.Control(func(fd uintptr) {
			h.gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
		})
	}
	if cfg.V6() {
		h.maxLen = maxUDPPayloadV6 - VXLANHdrLen
	}
	for _, a := range cfg.Remotes {
		ap := netip.AddrPortFrom(a, cfg.Port)
		h.remotes = append(h.remotes, net.UDPAddrFromAddrPort(ap))
		h.sockaddrs = append(h.sockaddrs, sockaddrOf(ap))
	}
	outer := 20 + 8 + VXLANHdrLen + 14 // IPv4, UDP, VXLAN, inner Ethernet
	if cfg.V6() {
		outer += 20
	}
	h.innerMTU = 1500
	for _, r := range h.remotes {
		h.innerMTU = min(h.innerMTU, pathMTU(cfg, r)-outer)
	}
	h.innerMTU = max(h.innerMTU, 576)
	return h, nil
}

// pathMTU is the route's MTU toward a remote (1550 if unknown): a tap's
// TCP super frames are cut so that each datagram fits it, never
// fragmented (TCP takes segments of any size up to its peer's MSS; the
// peer's MSS follows the smaller MTU anyway). Frames from guests keep the
// size the guest gave them.
func pathMTU(cfg VXLANConfig, r *net.UDPAddr) int {
	network := "udp4"
	if cfg.V6() {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	if cfg.Local.IsValid() {
		laddr = &net.UDPAddr{IP: cfg.Local.AsSlice()}
	}
	c, err := net.DialUDP(network, laddr, r)
	if err != nil {
		return 1550
	}
	defer c.Close()
	mtu := 1550
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			var v int
			var err error
			if cfg.V6() {
				v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU)
			} else {
				v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
			}
			if err == nil && v > 0 {
				mtu = v
			}
		})
	}
	return mtu
}

func vxlanBindError(cfg VXLANConfig, laddr *net.UDPAddr, err error) error {
	where := "any address"
	if cfg.Local.IsValid() {
		where = cfg.Local.String()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("vxlan: UDP port %d on %s is in use (another vxlan tux, a Linux vxlan device with that dstport, or another program); choose another --port, the same at every end", cfg.Port, where)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("vxlan: local address %s is not an address of this host (in the switch's network namespace); give one of its addresses or leave --local out", where)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("vxlan: UDP port %d needs privilege; use a port from 1024 up (4789 is the standard)", cfg.Port)
	}
	return fmt.Errorf("vxlan: listening on UDP %s: %v", laddr, err)
}

// stats: the state is "up", with the drops by reason and a recent send
// error when there are some, e.g. "up (dropped: 2 short, 1 vni)".
func (h *vxlanHelper) stats() Stats {
	s := Stats{State: "up", RxFrames: h.rxF.Load(), RxBytes: h.rxB.Load(), TxFrames: h.txF.Load(), TxBytes: h.txB.Load()}
	var why []string
	for i := range h.drops {
		if n := h.drops[i].Load(); n > 0 {
			s.Drops += n
			why = append(why, fmt.Sprintf("%d %s", n, vxDropNames[i]))
		}
	}
	if len(why) > 0 {
		s.State += " (dropped: " + strings.Join(why, ", ") + ")"
	}
	if e := h.lastErr.Load(); e != nil && time.Since(e.at) < vxErrRecent {
		s.State += "; " + e.msg
	}
	return s
}

// drop counts one drop; the first of each power of ten goes to the log.
// from is the sender of a datagram dropped, or invalid for a frame from
// the switch.
func (h *vxlanHelper) drop(reason int, from netip.AddrPort) {
	n := h.drops[reason].Add(1)
	for p := uint64(1); p <= n; p *= 10 {
		if p == n {
			where := "from the switch"
			if from.IsValid() {
				where = "from " + from.String()
			}
			log.Printf("vxlan: dropped (%s) %s: %d so far", vxDropNames[reason], where, n)
		}
	}
}

// destination is the remote a frame goes to, or -1 for all of them.
func (h *vxlanHelper) destination(b []byte) int {
	if len(h.remotes) == 1 {
		return 0
	}
	if b[0]&1 != 0 {
		return -1
	}
	if v, ok := h.macs.Load(macOf(b[0:6])); ok {
		e := v.(*vxMAC)
		if time.Now().UnixNano()-e.seen.Load() < int64(vxMACAge) {
			return int(e.remote.Load())
		}
	}
	return -1
}

// learn notes that src lives behind remote i.
func (h *vxlanHelper) learn(src []byte, i int) {
	if len(h.remotes) == 1 || src[0]&1 != 0 {
		return
	}
	now := time.Now().UnixNano()
	mac := macOf(src)
	if v, ok := h.macs.Load(mac); ok {
		e := v.(*vxMAC)
		if e.remote.Load() != int32(i) {
			e.remote.Store(int32(i)) // the MAC moved
		}
		if now-e.seen.Load() > int64(time.Second) {
			e.seen.Store(now)
		}
		return
	}
	if h.nmacs.Load() >= vxMaxMACs {
		return // full: unknown MACs are flooded, as before learning
	}
	e := &vxMAC{}
	e.remote.Store(int32(i))
	e.seen.Store(now)
	if _, loaded := h.macs.LoadOrStore(mac, e); !loaded {
		h.nmacs.Add(1)
	}
}

// sweep forgets MACs not heard from for vxMACAge, until stop closes.
func (h *vxlanHelper) sweep(stop <-chan struct{}) {
	t := time.NewTicker(vxSweep)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		old := time.Now().Add(-vxMACAge).UnixNano()
		h.macs.Range(func(k, v any) bool {
			if v.(*vxMAC).seen.Load() < old {
				if _, ok := h.macs.LoadAndDelete(k); ok {
					h.nmacs.Add(-1)
				}
			}
			return true
		})
	}
}

func macOf(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// newTx is an empty send batch.
func (h *vxlanHelper) newTx() *vxTx {
	b := &vxTx{h: h, hdr: make([]byte, VXLANHdrLen), segs: make([]byte, 512<<10)}
	putVXLANHdr(b.hdr, h.cfg.VNI)
	return b
}

// take adds frame f to the batch (it stays where it is until the batch
// is flushed), cutting a TCP super frame into standard frames, and
// sends the batch when it is full.
func (b *vxTx) take(f []byte) {
	n := len(f)
	if n > StdFrame && isSuperTCP(f) {
		b.segment(f)
	} else if n > b.h.maxLen {
		// Never truncated: counted (see docs/multi-host.md on MTUs).
		b.h.drop(vxDropOversize, netip.AddrPort{})
	} else {
		b.add(f, nil)
	}
	if len(b.frames) >= vxMaxFrames {
		b.flush()
	}
}
