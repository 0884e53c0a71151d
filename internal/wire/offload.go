package wire

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"

	"cloonix/internal/fabric"
)

// A tap helper sends TCP super frames (up to 64 KiB, see package tux,
// gso.go). They cross the switch whole only toward MACs learnt behind a
// tap (which takes them whole again); toward anything else the switch
// cuts them here into ordinary frames with full checksums, as the host's
// NIC would, so guests never see a frame larger than their MTU.

// MACSet holds the source MACs seen on offload conns of one switch:
// the destinations that take super frames. The zero value is empty.
type MACSet struct{ m sync.Map } // uint64 -> struct{}

// Learn records the source MAC of frame b and returns it.
func (s *MACSet) Learn(b []byte) uint64 {
	m := MACOf(b[6:12])
	s.m.Store(m, struct{}{})
	return m
}

// TakesSuper says whether b's destination is a unicast MAC learnt on an
// offload conn.
func (s *MACSet) TakesSuper(b []byte) bool {
	if b[0]&1 != 0 {
		return false
	}
	_, ok := s.m.Load(MACOf(b[0:6]))
	return ok
}

// MACOf is a 6-byte MAC address as a number.
func MACOf(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// Segmenter cuts a TCP super frame into standard frames (package tux,
// gso.go, provides it: wire sits below tux and cannot import it).
type Segmenter interface {
	// Segment calls emit with each standard frame cut from b, or
	// returns false when b is to pass whole.
	Segment(b, scratch []byte, emit func([]byte)) bool
}

// stdFrame is the largest ordinary frame: 1500 MTU, Ethernet header and
// one VLAN tag (tux.StdFrame).
const stdFrame = 1518

// OffloadConn is the switch's side of a tap, t2t or vxlan helper: the
// stream framing, read and written so that a super frame is never copied
// in user space: its bytes go from the socket straight into the frame's
// buffer, and out of it with one writev.
type OffloadConn struct {
	c       net.Conn
	r       *bufio.Reader
	macs    *MACSet
	seg     Segmenter
	hdr     [HeaderLen]byte
	hdrs    []byte      // length prefixes of the frames in iov
	iov     net.Buffers // frames written since the last Flush, in place
	pending []*fabric.Frame
	lastSrc uint64
	scratch []byte
}

// maxIov bounds the frames gathered for one writev.
const maxIov = 512

// NewOffloadConn wraps a helper's socket; macs is shared by the
// switch's offload conns, seg cuts super frames for the others.
func NewOffloadConn(c net.Conn, macs *MACSet, seg Segmenter) *OffloadConn {
	// A small read buffer: a burst of small frames still costs one read,
	// while most of a super frame is read straight into its own buffer.
	return &OffloadConn{c: c, r: bufio.NewReaderSize(c, 8<<10), macs: macs, seg: seg,
		hdrs: make([]byte, 0, HeaderLen*maxIov), scratch: make([]byte, fabric.MaxFrame)}
}

func (c *OffloadConn) readRaw() (*fabric.Frame, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return nil, err
	}
	n := FrameLen(c.hdr[:])
	if n < fabric.MinFrame || n > fabric.MaxFrame {
		return nil, fmt.Errorf("%w: helper sent length %d", ErrFrameSize, n)
	}
	f := fabric.NewFrame(n)
	dst := f.Bytes()
	k := min(c.r.Buffered(), n)
	if _, err := io.ReadFull(c.r, dst[:k]); err != nil {
		f.Release()
		return nil, err
	}
	if k < n {
		// The rest is not buffered yet: read it in place.
		if _, err := io.ReadFull(c.c, dst[k:]); err != nil {
			f.Release()
			return nil, err
		}
	}
	return f, nil
}

// ReadFrame returns the next frame, a super frame cut into standard
// ones unless its destination takes it whole.
func (c *OffloadConn) ReadFrame() (*fabric.Frame, error) {
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		return f, nil
	}
	f, err := c.readRaw()
	if err != nil {
		return nil, err
	}
	b := f.Bytes()
	if src := MACOf(b[6:12]); src != c.lastSrc && b[6]&1 == 0 {
		c.lastSrc = c.macs.Learn(b)
	}
	if len(b) <= stdFrame {
		return f.Shrink(), nil
	}
	if c.macs.TakesSuper(b) || c.seg == nil {
		return f, nil
	}
	c.pending = c.pending[:0]
	if !c.seg.Segment(b, c.scratch, func(s []byte) {
		nf := fabric.NewFrame(len(s))
		copy(nf.Bytes(), s)
		c.pending = append(c.pending, nf)
	}) {
		return f, nil
	}
	f.Release()
	return c.ReadFrame()
}

// WriteFrame gathers the frame where it is (the fabric keeps it until
// Flush returns); Flush sends the whole batch with one writev.
func (c *OffloadConn) WriteFrame(b []byte) error {
	if len(c.hdrs) == cap(c.hdrs) {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	n := len(c.hdrs)
	c.hdrs = AppendHeader(c.hdrs, len(b))
	c.iov = append(c.iov, c.hdrs[n:n+HeaderLen], b)
	return nil
}

// Flush sends the gathered frames.
func (c *OffloadConn) Flush() error {
	if len(c.iov) == 0 {
		return nil
	}
	full := c.iov
	bufs := c.iov
	_, err := bufs.WriteTo(c.c)
	clear(full)
	c.iov = full[:0]
	c.hdrs = c.hdrs[:0]
	return err
}

// Close closes the socket.
func (c *OffloadConn) Close() error { return c.c.Close() }
