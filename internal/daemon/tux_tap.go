package daemon

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
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

// offloadConn is the switch's side of a tap (or t2t) helper: the stream
// framing of internal/wire, read and written so that a super frame is
// never copied in user space: its bytes go from the socket straight into
// the frame's buffer, and out of it with one writev.
type offloadConn struct {
	c       net.Conn
	r       *bufio.Reader
	hdr     [4]byte
	hdrs    []byte      // length prefixes of the frames in iov
	iov     net.Buffers // frames written since the last Flush, in place
	pending []*fabric.Frame
	lastSrc uint64
	scratch []byte
}

func newOffloadConn(c net.Conn) *offloadConn {
	// A small read buffer: a burst of small frames still costs one read,
	// while most of a super frame is read straight into its own buffer.
	return &offloadConn{c: c, r: bufio.NewReaderSize(c, 8<<10), hdrs: make([]byte, 0, 4*maxIov), scratch: make([]byte, fabric.MaxFrame)}
}

// maxIov bounds the frames gathered for one writev.
const maxIov = 512

// guestMTU is the IP MTU of ordinary ports.
const guestMTU = 1500

func (c *offloadConn) readRaw() (*fabric.Frame, error) {
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(c.hdr[:]))
	if n < fabric.MinFrame || n > fabric.MaxFrame {
		return nil, fmt.Errorf("%w: helper sent length %d", wire.ErrFrameSize, n)
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

func (c *offloadConn) ReadFrame() (*fabric.Frame, error) {
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
	if src := macOf(b[6:12]); src != c.lastSrc && b[6]&1 == 0 {
		offloadMACs.Store(src, struct{}{})
		c.lastSrc = src
	}
	if len(b) <= tux.StdFrame {
		return f.Shrink(), nil
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

// WriteFrame gathers the frame where it is (the fabric keeps it until
// Flush returns); Flush sends the whole batch with one writev.
func (c *offloadConn) WriteFrame(b []byte) error {
	if len(c.hdrs) == cap(c.hdrs) {
		if err := c.Flush(); err != nil {
			return err
		}
	}
	n := len(c.hdrs)
	c.hdrs = binary.BigEndian.AppendUint32(c.hdrs, uint32(len(b)))
	c.iov = append(c.iov, c.hdrs[n:n+4], b)
	return nil
}

// Flush sends the gathered frames.
func (c *offloadConn) Flush() error {
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
func (c *offloadConn) Close() error { return c.c.Close() }
