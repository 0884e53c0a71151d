package tux

import (
	"bytes"
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"cloonix/internal/fabric"
)

// tcpMerger is the vxlan helper's receive offload, as a NIC's GRO: the
// TCP segments of one flow that arrive back to back (a UDP GRO receive
// holds dozens) become one super frame (gso.go), so the switch and a tap
// move one frame instead of forty; the switch cuts it again for guests.
// A segment joins only if it continues the flow exactly (same addresses,
// ports, ack, window, options; the next sequence number; ACK or ACK|PSH)
// and its checksum is right: a merged frame's checksum is recomputed, so
// a corrupt segment must never be hidden in one.
//
// Only segments toward a MAC that takes super frames (takes: learnt
// behind a tap or another offload conn, wire.MACSet) are merged: any
// other port (a guest's) gets the segments as they were sent.
//
// Only segments of a 1500-byte IP MTU are merged (all full but the
// last): where the switch cuts the super frame again for a guest, it cuts
// at that size (tux_tap.go), so the guest sees the segments that were
// sent. A flow with smaller segments (a guest at MTU 1450) passes as is.
type tcpMerger struct {
	buf   []byte
	n     int // bytes of the frame being built; 0: none
	ti    tcpInfo
	next  uint32 // sequence number that continues it
	segs  int
	emit  func([]byte) error
	takes func(frame []byte) bool // nil: every destination
}

// vxMergeMax bounds a merged frame: what the switch takes, so a tap's
// largest super frame (45 segments of 1448 bytes, 65226 bytes in all)
// is merged whole again; vxMergeMTU is the IP MTU of the segments merged.
const (
	vxMergeMax = fabric.MaxFrame
	vxMergeMTU = 1500
)

func newTCPMerger(emit func([]byte) error) *tcpMerger {
	return &tcpMerger{buf: make([]byte, vxMergeMax), emit: emit}
}

// add takes one frame (valid only during the call).
func (m *tcpMerger) add(f []byte) error {
	ti, ok := parseTCP(f)
	if !ok || !mergeable(f, ti) {
		if err := m.flush(); err != nil {
			return err
		}
		return m.emit(f)
	}
	mss := vxMergeMTU - (ti.l4 - ti.l3) - ti.thl
	plen := len(f) - ti.hdrEnd()
	if m.n > 0 && plen <= mss && m.continues(f, ti) {
		m.n += copy(m.buf[m.n:], f[ti.hdrEnd():])
		m.next += uint32(plen)
		m.segs++
		m.buf[m.ti.l4+13] |= f[ti.l4+13] // PSH of the last
		if f[ti.l4+13]&0x08 != 0 || plen < mss {
			return m.flush() // PSH or a short segment ends a run
		}
		return nil
	}
	if err := m.flush(); err != nil {
		return err
	}
	if plen != mss || f[ti.l4+13]&0x08 != 0 || (m.takes != nil && !m.takes(f)) {
		return m.emit(f)
	}
	m.n = copy(m.buf, f)
	m.ti = ti
	m.next = binary.BigEndian.Uint32(f[ti.l4+4:]) + uint32(len(f)-ti.hdrEnd())
	m.segs = 1
	return nil
}

// mergeable: a data segment with only ACK (and PSH) set, no IPv4
// options, and a right checksum.
func mergeable(f []byte, ti tcpInfo) bool {
	if len(f) == ti.hdrEnd() || f[ti.l4+13]&^0x08 != 0x10 || f[ti.l4+18] != 0 || f[ti.l4+19] != 0 {
		return false
	}
	if !ti.v6 && ti.l4-ti.l3 != 20 {
		return false
	}
	return checksum.Checksum(f[ti.l4:], pseudoSum(f, ti, len(f)-ti.l4)) == 0xffff
}

// continues tells whether segment f extends the frame being built.
func (m *tcpMerger) continues(f []byte, ti tcpInfo) bool {
	h := m.buf[:m.n]
	t := m.ti
	if ti != t || m.n+len(f)-ti.hdrEnd() > vxMergeMax || binary.BigEndian.Uint32(f[ti.l4+4:]) != m.next {
		return false
	}
	// Ethernet and VLAN headers.
	if !bytes.Equal(f[:t.l3], h[:t.l3]) {
		return false
	}
	if t.v6 {
		// Version, class, flow; next header and hop limit; addresses.
		if !bytes.Equal(f[t.l3:t.l3+4], h[t.l3:t.l3+4]) || !bytes.Equal(f[t.l3+6:t.l3+40], h[t.l3+6:t.l3+40]) {
			return false
		}
	} else if !bytes.Equal(f[t.l3:t.l3+2], h[t.l3:t.l3+2]) || !bytes.Equal(f[t.l3+6:t.l3+10], h[t.l3+6:t.l3+10]) || !bytes.Equal(f[t.l3+12:t.l3+20], h[t.l3+12:t.l3+20]) {
		// ToS; flags, TTL, protocol; addresses.
		return false
	}
	// Ports; ack, offset, window; options (the flags were checked).
	return bytes.Equal(f[t.l4:t.l4+4], h[t.l4:t.l4+4]) && bytes.Equal(f[t.l4+8:t.l4+13], h[t.l4+8:t.l4+13]) &&
		bytes.Equal(f[t.l4+14:t.l4+16], h[t.l4+14:t.l4+16]) && bytes.Equal(f[t.l4+20:t.l4+t.thl], h[t.l4+20:t.l4+t.thl])
}

// flush emits the frame being built: a merged one with new lengths and
// checksums (partial when it is a super frame, the switch's rule).
func (m *tcpMerger) flush() error {
	if m.n == 0 {
		return nil
	}
	f := m.buf[:m.n]
	m.n = 0
	if m.segs > 1 {
		t := m.ti
		if t.v6 {
			binary.BigEndian.PutUint16(f[t.l3+4:], uint16(len(f)-t.l3-40))
		} else {
			binary.BigEndian.PutUint16(f[t.l3+2:], uint16(len(f)-t.l3))
			setIPv4Checksum(f, t)
		}
		setTCPChecksum(f, t, len(f) > StdFrame)
	}
	return m.emit(f)
}
