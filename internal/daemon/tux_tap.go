package daemon

import (
	"sync"

	"cloonix/internal/fabric"
	"cloonix/internal/tux"
	"cloonix/internal/wire"
)

// A tap helper sends TCP super frames (up to 64 KiB, see package tux,
// gso.go). They cross the switch whole only toward MACs learnt behind a
// tap (which takes them whole again); toward anything else the switch
// cuts them here into ordinary frames with full checksums, as the host's
// NIC would, so guests never see a frame larger than their MTU.

// offloadMACs are the source MACs seen on tap ports (any switch in this
// process): destinations that take super frames.
var offloadMACs sync.Map // uint64 -> struct{}

func macOf(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// offloadConn is the switch's side of a tap helper.
type offloadConn struct {
	*wire.StreamConn
	pending []*fabric.Frame
	lastSrc uint64
	scratch []byte
}

func newOffloadConn(s *wire.StreamConn) *offloadConn {
	return &offloadConn{StreamConn: s, scratch: make([]byte, fabric.MaxFrame)}
}

// guestMTU is the IP MTU of ordinary ports.
const guestMTU = 1500

func (c *offloadConn) ReadFrame() (*fabric.Frame, error) {
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		return f, nil
	}
	f, err := c.StreamConn.ReadFrame()
	if err != nil {
		return nil, err
	}
	b := f.Bytes()
	if src := macOf(b[6:12]); src != c.lastSrc && b[6]&1 == 0 {
		offloadMACs.Store(src, struct{}{})
		c.lastSrc = src
	}
	if len(b) <= tux.StdFrame {
		return f, nil
	}
	if b[0]&1 == 0 {
		if _, ok := offloadMACs.Load(macOf(b[0:6])); ok {
			return f, nil
		}
	}
	mss := tux.MSSFor(b, guestMTU)
	if mss <= 0 {
		return f, nil
	}
	c.pending = c.pending[:0]
	if !tux.SegmentTCP(b, mss, false, c.scratch, func(s []byte) {
		nf := fabric.NewFrame(len(s))
		copy(nf.Bytes(), s)
		c.pending = append(c.pending, nf)
	}) {
		return f, nil
	}
	f.Release()
	return c.ReadFrame()
}
