package tux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
// batches (sendmmsg/recvmmsg) so a burst costs one system call.

func init() { setups["vxlan"] = setupVXLAN }

// Tuning of the helper.
const (
	vxBatch     = 32                // datagrams per sendmmsg/recvmmsg
	vxBufSize   = 65536             // per datagram: no UDP payload is longer
	vxSockBuf   = 4 << 20           // socket buffers asked for
	vxMACAge    = 300 * time.Second // as Linux's vxlan ageing
	vxSweep     = 30 * time.Second
	vxErrRecent = 10 * time.Second // a send error shows in the state this long
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn both offer.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

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
	bc      batchConn
	remotes []*net.UDPAddr
	maxLen  int // longest frame that fits one datagram

	macs sync.Map // uint64 MAC -> *vxMAC (only with several remotes)

	rxF, rxB, txF, txB atomic.Uint64
	drops              [vxDropReasons]atomic.Uint64
	lastErr            atomic.Pointer[vxErr]
}

type vxMAC struct {
	remote atomic.Int32
	seen   atomic.Int64 // unix nanoseconds
}

type vxErr struct {
	at  time.Time
	msg string
}

func setupVXLAN(args []string, c *ctl, sw net.Conn) (kind, map[string]string, error) {
	fs := flag.NewFlagSet("vxlan", flag.ContinueOnError)
	remote := fs.String("remote", "", "IP[,IP...] of the other ends")
	vni := fs.String("vni", "", "VXLAN network identifier, 0..16777215")
	port := fs.String("port", "", "UDP port to listen on and send to (default 4789)")
	local := fs.String("local", "", "local address to bind (default: any)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	cfg, err := ParseVXLAN(*remote, *vni, *port, *local)
	if err != nil {
		return nil, nil, err
	}
	h, err := newVXLAN(cfg)
	if err != nil {
		return nil, nil, err
	}
	// No info: list shows the options given, which fconf save writes back.
	return h, nil, nil
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
	h := &vxlanHelper{cfg: cfg, conn: conn, maxLen: maxUDPPayloadV4 - VXLANHdrLen}
	if cfg.V6() {
		h.bc = ipv6.NewPacketConn(conn)
		h.maxLen = maxUDPPayloadV6 - VXLANHdrLen
	} else {
		h.bc = ipv4.NewPacketConn(conn)
	}
	for _, a := range cfg.Remotes {
		h.remotes = append(h.remotes, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, cfg.Port)))
	}
	return h, nil
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

func (h *vxlanHelper) handle(r Request) error { return fmt.Errorf("a vxlan tux has no %q", r.Op) }

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
func (h *vxlanHelper) drop(reason int, from net.Addr) {
	n := h.drops[reason].Add(1)
	for p := uint64(1); p <= n; p *= 10 {
		if p == n {
			log.Printf("vxlan: dropped (%s) from %v: %d so far", vxDropNames[reason], from, n)
		}
	}
}

func (h *vxlanHelper) serve(sw net.Conn) error {
	errc := make(chan error, 2)
	go func() { errc <- h.fromNet(sw) }()
	go func() { errc <- h.fromSwitch(sw) }()
	if len(h.remotes) > 1 {
		go h.sweep()
	}
	err := <-errc
	sw.Close()
	h.conn.Close()
	return err
}

// destinations returns which remotes get a frame (b is the frame).
func (h *vxlanHelper) destinations(b []byte, all []int, one []int) []int {
	if len(h.remotes) == 1 || b[0]&1 != 0 {
		return all
	}
	if v, ok := h.macs.Load(macOf(b[0:6])); ok {
		e := v.(*vxMAC)
		if time.Now().UnixNano()-e.seen.Load() < int64(vxMACAge) {
			one[0] = int(e.remote.Load())
			return one
		}
	}
	return all
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
	e := &vxMAC{}
	e.remote.Store(int32(i))
	e.seen.Store(now)
	h.macs.Store(mac, e)
}

// sweep forgets MACs not heard from for vxMACAge.
func (h *vxlanHelper) sweep() {
	for range time.Tick(vxSweep) {
		old := time.Now().Add(-vxMACAge).UnixNano()
		h.macs.Range(func(k, v any) bool {
			if v.(*vxMAC).seen.Load() < old {
				h.macs.Delete(k)
			}
			return true
		})
	}
}

func macOf(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// fromSwitch reads the switch's frames and sends them, a batch at a
// time: it keeps adding frames while whole ones wait in its buffer.
func (h *vxlanHelper) fromSwitch(sw net.Conn) error {
	r := bufio.NewReaderSize(sw, 512<<10)
	slots := make([][]byte, vxBatch)
	for i := range slots {
		slots[i] = make([]byte, VXLANHdrLen+65535)
		putVXLANHdr(slots[i], h.cfg.VNI)
	}
	maxMsgs := vxBatch * len(h.remotes)
	ms := make([]ipv4.Message, maxMsgs)
	bufs := make([][][]byte, maxMsgs)
	for i := range ms {
		bufs[i] = make([][]byte, 1)
	}
	all := make([]int, len(h.remotes))
	for i := range all {
		all[i] = i
	}
	one := make([]int, 1)
	var lb [4]byte
	for {
		nslot, nmsg, nbytes := 0, 0, 0
		for nslot < vxBatch && (nslot == 0 || r.Buffered() >= 4) {
			if _, err := io.ReadFull(r, lb[:]); err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint32(lb[:]))
			if n < minInnerFrame || n > 65535 {
				return fmt.Errorf("switch sent a frame of %d bytes", n)
			}
			slot := slots[nslot]
			if _, err := io.ReadFull(r, slot[VXLANHdrLen:VXLANHdrLen+n]); err != nil {
				return err
			}
			if n > h.maxLen {
				// Never truncated: counted (see docs/multi-host.md on MTUs).
				h.drop(vxDropOversize, sw.LocalAddr())
				continue
			}
			nslot++
			nbytes += n
			for _, i := range h.destinations(slot[VXLANHdrLen:], all, one) {
				bufs[nmsg][0] = slot[:VXLANHdrLen+n]
				ms[nmsg] = ipv4.Message{Buffers: bufs[nmsg], Addr: h.remotes[i]}
				nmsg++
			}
		}
		if nmsg == 0 {
			continue
		}
		h.send(ms[:nmsg])
		h.txF.Add(uint64(nslot))
		h.txB.Add(uint64(nbytes))
	}
}

// send writes ms, skipping (and counting) a datagram the kernel refuses.
func (h *vxlanHelper) send(ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := h.bc.WriteBatch(ms, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			h.drops[vxDropSend].Add(1)
			e := &vxErr{at: time.Now(), msg: fmt.Sprintf("sending to %v: %v", ms[0].Addr, errors.Unwrap(err))}
			if old := h.lastErr.Swap(e); old == nil || old.msg != e.msg {
				log.Print("vxlan: ", e.msg)
			}
			n = 1
		}
		ms = ms[n:]
	}
}

// fromNet receives datagrams, checks them and gives their frames to
// the switch, flushing once per batch.
func (h *vxlanHelper) fromNet(sw net.Conn) error {
	w := bufio.NewWriterSize(sw, 512<<10)
	ms := make([]ipv4.Message, vxBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, vxBufSize)}
	}
	var lb [4]byte
	for {
		n, err := h.bc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) {
				continue
			}
			return fmt.Errorf("vxlan socket: %v", err)
		}
		for i := range n {
			m := &ms[i]
			from := m.Addr
			ri := h.remoteIndex(from)
			if ri < 0 {
				h.drop(vxDropSource, from)
				continue
			}
			if m.Flags&syscall.MSG_TRUNC != 0 {
				h.drop(vxDropTruncated, from)
				continue
			}
			vni, f, err := DecodeVXLAN(m.Buffers[0][:m.N])
			switch {
			case err == errVXShort:
				h.drop(vxDropShort, from)
				continue
			case err != nil:
				h.drop(vxDropFlags, from)
				continue
			case vni != h.cfg.VNI:
				h.drop(vxDropVNI, from)
				continue
			}
			h.learn(f[6:12], ri)
			binary.BigEndian.PutUint32(lb[:], uint32(len(f)))
			if _, err := w.Write(lb[:]); err != nil {
				return err
			}
			if _, err := w.Write(f); err != nil {
				return err
			}
			h.rxF.Add(1)
			h.rxB.Add(uint64(len(f)))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// remoteIndex is the index of the remote a datagram came from, or -1.
func (h *vxlanHelper) remoteIndex(a net.Addr) int {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return -1
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return -1
	}
	ip = ip.Unmap()
	for i, r := range h.cfg.Remotes {
		if r == ip {
			return i
		}
	}
	return -1
}
