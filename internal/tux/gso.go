package tux

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// Large TCP segments (TSO/GSO) cross the switch whole: a tap hands the
// helper a segment of up to 64 KiB with a partial checksum, the helper
// passes it on as one "super frame", and the consumer either gives it to
// another tap whole (the kernel segments or delivers it as is) or cuts it
// into MTU-sized frames with full checksums (SegmentTCP) for a guest.
//
// The rule inside the switch: a TCP frame longer than StdFrame carries a
// partial checksum (the pseudo-header sum over the whole segment, as the
// kernel leaves it for offload); every other frame carries full checksums.

// StdFrame is the largest ordinary frame: 1500 MTU, Ethernet header and
// one VLAN tag.
const StdFrame = 1518

// vnetHdr is struct virtio_net_hdr, little endian on x86.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func (h *vnetHdr) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.LittleEndian.Uint16(b[2:])
	h.gsoSize = binary.LittleEndian.Uint16(b[4:])
	h.csumStart = binary.LittleEndian.Uint16(b[6:])
	h.csumOffset = binary.LittleEndian.Uint16(b[8:])
}

func (h *vnetHdr) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// tcpInfo locates the headers of an Ethernet/IPv4-or-IPv6/TCP frame.
type tcpInfo struct {
	l3, l4, thl int // offsets of the IP and TCP headers, TCP header length
	v6          bool
}

// end of headers: where the payload starts.
func (t tcpInfo) hdrEnd() int { return t.l4 + t.thl }

// parseTCP finds the TCP headers of a frame (with at most one VLAN tag,
// IPv4 without fragments, IPv6 without extension headers).
func parseTCP(b []byte) (tcpInfo, bool) {
	var t tcpInfo
	if len(b) < 14 {
		return t, false
	}
	et := binary.BigEndian.Uint16(b[12:])
	t.l3 = 14
	if et == 0x8100 {
		if len(b) < 18 {
			return t, false
		}
		et = binary.BigEndian.Uint16(b[16:])
		t.l3 = 18
	}
	switch et {
	case 0x0800:
		if len(b) < t.l3+20 || b[t.l3]>>4 != 4 {
			return t, false
		}
		ihl := int(b[t.l3]&0xf) * 4
		if ihl < 20 || b[t.l3+9] != 6 || binary.BigEndian.Uint16(b[t.l3+6:])&0x3fff != 0 {
			return t, false
		}
		if int(binary.BigEndian.Uint16(b[t.l3+2:])) != len(b)-t.l3 {
			return t, false
		}
		t.l4 = t.l3 + ihl
	case 0x86dd:
		if len(b) < t.l3+40 || b[t.l3]>>4 != 6 || b[t.l3+6] != 6 {
			return t, false
		}
		if int(binary.BigEndian.Uint16(b[t.l3+4:])) != len(b)-t.l3-40 {
			return t, false
		}
		t.v6 = true
		t.l4 = t.l3 + 40
	default:
		return t, false
	}
	if len(b) < t.l4+20 {
		return t, false
	}
	t.thl = int(b[t.l4+12]>>4) * 4
	if t.thl < 20 || len(b) < t.l4+t.thl {
		return t, false
	}
	return t, true
}

// pseudoSum is the unfolded-then-folded pseudo-header sum for a TCP
// segment of tcpLen bytes (not complemented).
func pseudoSum(b []byte, t tcpInfo, tcpLen int) uint16 {
	var s uint16
	if t.v6 {
		s = checksum.Checksum(b[t.l3+8:t.l3+40], 0)
	} else {
		s = checksum.Checksum(b[t.l3+12:t.l3+20], 0)
	}
	var tail [4]byte
	binary.BigEndian.PutUint16(tail[0:], 6)
	binary.BigEndian.PutUint16(tail[2:], uint16(tcpLen))
	return checksum.Checksum(tail[:], s)
}

// setTCPChecksum writes the TCP checksum of a frame: the full checksum,
// or (partial) the pseudo-header sum the kernel expects with offloads.
func setTCPChecksum(b []byte, t tcpInfo, partial bool) {
	tcpLen := len(b) - t.l4
	ps := pseudoSum(b, t, tcpLen)
	if partial {
		binary.BigEndian.PutUint16(b[t.l4+16:], ps)
		return
	}
	b[t.l4+16], b[t.l4+17] = 0, 0
	binary.BigEndian.PutUint16(b[t.l4+16:], ^checksum.Checksum(b[t.l4:], ps))
}

func setIPv4Checksum(b []byte, t tcpInfo) {
	b[t.l3+10], b[t.l3+11] = 0, 0
	binary.BigEndian.PutUint16(b[t.l3+10:], ^checksum.Checksum(b[t.l3:t.l4], 0))
}

// IsSuper tells whether a frame is a TCP super frame (longer than an
// ordinary frame), to be segmented before it reaches an ordinary port.
func IsSuper(b []byte) bool {
	if len(b) <= StdFrame {
		return false
	}
	_, ok := parseTCP(b)
	return ok
}

// MSSFor is the TCP payload per segment for an IP MTU.
func MSSFor(b []byte, mtu int) int {
	t, ok := parseTCP(b)
	if !ok {
		return 0
	}
	return mtu - (t.l4 - t.l3) - t.thl
}

// SegmentTCP cuts a TCP frame into frames carrying at most mss bytes of
// payload each, as a NIC's TSO would: sequence numbers, IP lengths and
// ids, flags (FIN/PSH on the last, CWR on the first) and checksums (full,
// or partial for pieces that stay super frames). emit gets each frame in
// scratch (valid until it returns). It returns false, emitting nothing,
// when b is not a TCP frame it can cut.
func SegmentTCP(b []byte, mss int, partial bool, scratch []byte, emit func([]byte)) bool {
	return segmentTCP(b, mss, partial, func(n int) []byte {
		if len(scratch) < n {
			scratch = make([]byte, n)
		}
		return scratch[:n]
	}, emit)
}

// segmentTCP is SegmentTCP building each frame in room(n), so a caller
// may have them built where they are to stay.
func segmentTCP(b []byte, mss int, partial bool, room func(n int) []byte, emit func([]byte)) bool {
	t, ok := parseTCP(b)
	if !ok || mss <= 0 {
		return false
	}
	c := newCut(b, t)
	for off := 0; off < len(c.payload) || off == 0; off += mss {
		end := min(off+mss, len(c.payload))
		n := c.hl + end - off
		s := room(n)
		copy(s, b[:c.hl])
		copy(s[c.hl:], c.payload[off:end])
		c.fix(s, n, off, end)
		setTCPChecksum(s, t, partial && n > StdFrame)
		emit(s)
		if end == len(c.payload) {
			break
		}
	}
	return true
}

// segmentTCPSplit cuts b as segmentTCP does (full checksums) but builds
// only each segment's headers, in room(hl); emit gets the headers and
// the payload, a slice of b: a sender with scatter-gather (the vxlan
// tux's sendmmsg) sends the payload from where it is, without copying it.
func segmentTCPSplit(b []byte, mss int, room func(n int) []byte, emit func(hdr, pay []byte)) bool {
	t, ok := parseTCP(b)
	if !ok || mss <= 0 {
		return false
	}
	c := newCut(b, t)
	for off := 0; off < len(c.payload) || off == 0; off += mss {
		end := min(off+mss, len(c.payload))
		pay := c.payload[off:end]
		h := room(c.hl)
		copy(h, b[:c.hl])
		c.fix(h, c.hl+len(pay), off, end)
		ps := pseudoSum(h, t, c.hl-t.l4+len(pay))
		h[t.l4+16], h[t.l4+17] = 0, 0
		// The header is a whole number of 16-bit words (TCP's is of
		// 32-bit ones), so the payload's sum joins it as it is.
		binary.BigEndian.PutUint16(h[t.l4+16:], ^checksum.Checksum(h[t.l4:], checksum.Checksum(pay, ps)))
		emit(h, pay)
		if end == len(c.payload) {
			break
		}
	}
	return true
}

// tcpCut is what every segment of one TCP frame starts from.
type tcpCut struct {
	t       tcpInfo
	hl      int
	payload []byte
	seq     uint32
	flags   byte
	id      uint16
}

func newCut(b []byte, t tcpInfo) *tcpCut {
	c := &tcpCut{t: t, hl: t.hdrEnd(), seq: binary.BigEndian.Uint32(b[t.l4+4:]), flags: b[t.l4+13]}
	c.payload = b[c.hl:]
	if !t.v6 {
		c.id = binary.BigEndian.Uint16(b[t.l3+4:])
	}
	return c
}

// fix sets the headers in s (copied from the frame) for the segment of
// n bytes carrying payload[off:end]: sequence number, flags (FIN/PSH on
// the last, CWR on the first), IP length, id and checksum.
func (c *tcpCut) fix(s []byte, n, off, end int) {
	t := c.t
	binary.BigEndian.PutUint32(s[t.l4+4:], c.seq+uint32(off))
	f := c.flags
	if end < len(c.payload) {
		f &^= 0x01 | 0x08
	}
	if off > 0 {
		f &^= 0x80
	}
	s[t.l4+13] = f
	if t.v6 {
		binary.BigEndian.PutUint16(s[t.l3+4:], uint16(n-t.l3-40))
	} else {
		binary.BigEndian.PutUint16(s[t.l3+2:], uint16(n-t.l3))
		binary.BigEndian.PutUint16(s[t.l3+4:], c.id)
		c.id++
		setIPv4Checksum(s, t)
	}
}

// CompleteChecksum finishes a partial checksum at csumStart/csumOffset,
// as a NIC would for VIRTIO_NET_HDR_F_NEEDS_CSUM.
func CompleteChecksum(b []byte, start, off int) bool {
	if start+off+2 > len(b) || start > len(b) {
		return false
	}
	init := binary.BigEndian.Uint16(b[start+off:])
	b[start+off], b[start+off+1] = 0, 0
	binary.BigEndian.PutUint16(b[start+off:], ^checksum.Checksum(b[start:], init))
	return true
}
