package tux

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/rawio"
	"cloonix/internal/wire"
)

// TapConn is the switch's side of a host tap, the one home of every tap
// the switch holds: a tap tux's (the helper made the interface and gave
// the switch a copy; it keeps the privileges, the switch the data), a
// container node's eth (the daemon makes the tap, machine/cnt moves it
// into the node) and a QEMU guest's (a packet socket on QEMU's tap,
// which speaks the same virtio-net header). No process hop per frame: a
// frame from a tap goes, in the port's reader, from the tap's read
// straight into the fabric, and toward another tap out with one writev
// from the sending port's reader (fabric.TryWriter).
//
// It lives beside gso.go (the virtio-net header, checksum completion,
// TCP segmentation), which it uses; wire holds the transports that need
// none of that.
//
// Reads: the tap has IFF_VNET_HDR with TSO/checksum offloads, so the
// host's or node's TCP segments arrive whole (up to 64 KiB) with a GSO
// header. One readv puts the header aside and the frame straight into a
// 64 KiB frame buffer; a frame no larger than a standard one moves into a
// small buffer (Shrink). A super frame crosses the switch whole only
// toward a MAC that takes it (wire.MACSet: learnt behind a tap or an
// offload conn), which gets it whole again with a GSO header, so the
// receiving kernel never cuts it; toward anything else it is cut here
// into standard frames with full checksums, as a NIC would. One too long
// for a switch frame (64 KiB plus headers) goes on as super frames of at
// most 60000 bytes of payload. Without offloads, every 1500-byte frame
// cost a read, a switch hop and a write (bench/cnt: 0.25x a Linux
// bridge; docs/benchmarks.md).
//
// Writes: a frame larger than the tap's MTU allows goes to the kernel
// whole with a GSO header (the kernel cuts it if it must leave on a
// wire); anything else with an empty header. A tap takes a frame at once
// or never; a packet socket may have no room, and what it cannot take
// now is kept and written first next time, so the order holds.
type TapConn struct {
	f  *os.File
	rc syscall.RawConn
	o  TapOptions

	// The reading side (the port's reader goroutine).
	hdr     [hosttap.VnetHdrLen]byte // the last read's
	iov     [3][]byte
	buf     []byte // a frame longer than a switch frame: its tail is read at MaxFrame, then the whole of it here
	scratch []byte // segments being cut
	pending []*fabric.Frame
	head    int // pending[head:] are still to go
	lastSrc uint64

	// The writing side (one writer at a time, the fabric's rule).
	whdr [hosttap.VnetHdrLen]byte
	wiov [2][]byte
	kept []*fabric.Frame // copies WriteNow could not write, for Flush

	mu     sync.Mutex
	held   map[uint64]bool // source MACs held in o.MACs (Hold); guarded by mu
	closed atomic.Bool

	rxF, rxB atomic.Uint64
	txF, txB atomic.Uint64
	drops    atomic.Uint64
}

// TapOptions say how a TapConn treats its tap.
type TapOptions struct {
	Name string       // the interface, for errors
	MTU  int          // the tap's IP MTU (0: 1500): longer frames are written as GSO frames
	MACs *wire.MACSet // the switch's: the destinations that take super frames
	// Hold holds the sources' MACs in MACs while the tap is open (a
	// node's or a QEMU guest's: a guest of another kind may reuse the
	// name and MAC later) instead of learning them for good.
	Hold    bool
	OnClose func() // after the descriptor is closed (a helper's socket)
}

// minMSS is Linux's smallest TCP MSS: a GSO header asking for smaller
// segments (a guest's own header on a packet socket) would turn one read
// into thousands of frames, so such a frame is cut for the MTU instead.
const minMSS = 88

// NewTapConn takes f, a tap (or packet socket) descriptor in
// non-blocking mode, with a virtio-net header.
func NewTapConn(f *os.File, o TapOptions) (*TapConn, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	if o.MTU <= 0 {
		o.MTU = guestMTU
	}
	if o.MACs == nil {
		o.MACs = &wire.MACSet{}
	}
	return &TapConn{f: f, rc: rc, o: o, buf: make([]byte, hosttap.MaxRead-hosttap.VnetHdrLen),
		scratch: make([]byte, fabric.MaxFrame), held: map[uint64]bool{}}, nil
}

// File is the tap's descriptor (to set its carrier).
func (c *TapConn) File() *os.File { return c.f }

// stats are the tap's counters: Rx from the tap into the switch, Tx from
// the switch to the tap.
func (c *TapConn) stats() Stats {
	return Stats{State: "up", RxFrames: c.rxF.Load(), RxBytes: c.rxB.Load(), TxFrames: c.txF.Load(), TxBytes: c.txB.Load(), Drops: c.drops.Load()}
}

// Buffered tells the fabric's reader whether frames are already read,
// so it batches them before handing anything over: when none are, it
// reads once more without waiting.
func (c *TapConn) Buffered() int {
	if c.queued() == 0 {
		_ = c.fill(false) // an error comes back at the next ReadFrame
	}
	return c.queued()
}

// ReadFrame returns the next frame from the tap.
func (c *TapConn) ReadFrame() (*fabric.Frame, error) {
	for c.queued() == 0 {
		if err := c.fill(true); err != nil {
			return nil, err
		}
	}
	f := c.pending[c.head]
	c.pending[c.head] = nil
	if c.head++; c.head == len(c.pending) {
		c.pending, c.head = c.pending[:0], 0
	}
	return f, nil
}

func (c *TapConn) queued() int { return len(c.pending) - c.head }

// fill reads one frame (waiting for it when wait) and queues what comes
// of it: the frame, its segments, or nothing when it is dropped.
func (c *TapConn) fill(wait bool) error {
	f := fabric.NewFrame(fabric.MaxFrame)
	c.iov = [3][]byte{c.hdr[:], f.Buf(), c.buf[fabric.MaxFrame:]}
	iov := c.iov[:] // a field: no allocation per read
	var n int
	var e syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for n, e = rawio.IOV(unix.SYS_READV, fd, iov); e == unix.EINTR; {
			n, e = rawio.IOV(unix.SYS_READV, fd, iov)
		}
		return e != unix.EAGAIN || !wait
	})
	c.iov[1] = nil
	switch {
	case err != nil:
		f.Release()
		if c.closed.Load() {
			return net.ErrClosed
		}
		return fmt.Errorf("reading tap %s: %w", c.o.Name, err)
	case e == unix.EAGAIN:
		f.Release()
		return nil
	case e == unix.EINVAL:
		// A packet socket's frame whose GSO it cannot describe.
		f.Release()
		c.drops.Add(1)
		return nil
	case e != 0:
		f.Release()
		return fmt.Errorf("reading tap %s: %w", c.o.Name, e)
	}
	n -= hosttap.VnetHdrLen
	if n < fabric.MinFrame {
		f.Release()
		c.drops.Add(1)
		return nil
	}
	c.rxF.Add(1)
	c.rxB.Add(uint64(n))
	if n > fabric.MaxFrame {
		copy(c.buf, f.Buf())
		f.Release()
		c.take(nil, c.buf[:n])
		return nil
	}
	f.N = n
	c.take(f, f.Bytes())
	return nil
}

// take applies the virtio-net header read with b (in frame f, or, too
// long for one, f nil): it queues the frame, its segments or nothing.
func (c *TapConn) take(f *fabric.Frame, b []byte) {
	var h vnetHdr
	h.decode(c.hdr[:])
	c.learn(b)
	if h.gsoType&^hosttap.GSOECN != hosttap.GSONone && len(b) > StdFrame {
		if f != nil && c.o.MACs.TakesSuper(b) {
			c.pending = append(c.pending, f) // partial checksum kept: the switch's rule
			return
		}
		if !c.cut(b, int(h.gsoSize)) {
			c.drops.Add(1)
		}
		if f != nil {
			f.Release()
		}
		return
	}
	switch {
	case f == nil: // too long and no GSO: not a frame
		c.drops.Add(1)
	case h.flags&hosttap.NeedsCsum != 0 && !CompleteChecksum(b, int(h.csumStart), int(h.csumOffset)):
		f.Release()
		c.drops.Add(1)
	default:
		c.pending = append(c.pending, f.Shrink())
	}
}

// cut queues super frame b cut into segments of mss bytes of payload:
// standard frames with full checksums, or, when b's destination takes
// super frames (b is too long for the switch), super frames of up to
// 60000 bytes with their checksums partial.
func (c *TapConn) cut(b []byte, mss int) bool {
	if mss < minMSS {
		mss = MSSFor(b, c.o.MTU)
	}
	if mss < minMSS {
		return false
	}
	size, partial := mss, false
	if c.o.MACs.TakesSuper(b) {
		size, partial = (60000/mss)*mss, true
	}
	return SegmentTCP(b, size, partial, c.scratch, func(s []byte) { c.pending = append(c.pending, frameOf(s)) })
}

func frameOf(b []byte) *fabric.Frame {
	fr := fabric.NewFrame(len(b))
	copy(fr.Bytes(), b)
	return fr
}

// learn records frame b's source MAC as taking super frames: for good,
// or held until the tap closes (TapOptions.Hold; not once it is closed).
func (c *TapConn) learn(b []byte) {
	src := wire.MACOf(b[6:12])
	if src == c.lastSrc || b[6]&1 != 0 {
		return
	}
	c.lastSrc = src
	if !c.o.Hold {
		c.o.MACs.Learn(b)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() || c.held[src] {
		return
	}
	c.o.MACs.Hold(src)
	c.held[src] = true
}

// gsoHeader fills h for frame b toward a tap of IP MTU mtu: a TCP frame
// longer than that (a super frame, its checksum partial as the switch
// carries them) gets the GSO fields, so the kernel takes it as one
// segment; any other frame gets a zero header.
func gsoHeader(h []byte, b []byte, mtu int) {
	v := vnetHdr{}
	if len(b) > mtu+18 {
		if ti, ok := parseTCP(b); ok {
			v.flags = hosttap.NeedsCsum
			v.gsoType = hosttap.GSOTCPv4
			if ti.v6 {
				v.gsoType = hosttap.GSOTCPv6
			}
			v.hdrLen = uint16(ti.hdrEnd())
			v.gsoSize = uint16(mtu - (ti.l4 - ti.l3) - ti.thl)
			v.csumStart = uint16(ti.l4)
			v.csumOffset = 16
		}
	}
	v.encode(h)
}

// WriteFrame writes frame b, after what WriteNow kept, waiting for room.
func (c *TapConn) WriteFrame(b []byte) error {
	if err := c.Flush(); err != nil {
		return err
	}
	return c.write(b, true)
}

// write writes frame b behind its header: when wait, as long as the
// descriptor has no room; otherwise EAGAIN says so. Frames the interface
// refuses (down, or a frame it cannot take) are dropped and counted.
func (c *TapConn) write(b []byte, wait bool) error {
	gsoHeader(c.whdr[:], b, c.o.MTU)
	c.wiov = [2][]byte{c.whdr[:], b}
	iov := c.wiov[:] // a field: no allocation per write
	var e syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		_, e = rawio.IOV(unix.SYS_WRITEV, fd, iov)
		return !wait || (e != unix.EAGAIN && e != unix.EINTR)
	})
	c.wiov[1] = nil
	switch {
	case err != nil:
		return fmt.Errorf("writing tap %s: %w", c.o.Name, err)
	case e == 0:
		c.txF.Add(1)
		c.txB.Add(uint64(len(b)))
		return nil
	case e == unix.EAGAIN, e == unix.EINTR:
		return unix.EAGAIN
	case e == unix.EIO, e == unix.EINVAL, e == unix.EMSGSIZE, e == unix.ENOBUFS, e == unix.ENETDOWN, e == unix.ENXIO:
		c.drops.Add(1) // interface down, or frame refused (a packet socket's too)
		return nil
	}
	return fmt.Errorf("writing tap %s: %w", c.o.Name, e)
}

// WriteNow writes frames from the caller (the sending port's reader): no
// hand-over to the port's writer goroutine. What finds no room (a full
// packet socket) is copied and kept for Flush, in the writer goroutine;
// the fabric calls WriteNow again only once Flush has run, so nothing
// kept is ever overtaken.
func (c *TapConn) WriteNow(frames []*fabric.Frame) (bool, error) {
	for i, f := range frames {
		err := c.write(f.Bytes(), false)
		if err == unix.EAGAIN {
			for _, g := range frames[i:] {
				c.kept = append(c.kept, frameOf(g.Bytes()))
			}
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// Flush writes what WriteNow kept.
func (c *TapConn) Flush() error {
	for len(c.kept) > 0 {
		f := c.kept[0]
		err := c.write(f.Bytes(), true)
		f.Release()
		c.kept[0] = nil
		c.kept = c.kept[1:]
		if err != nil {
			return err
		}
	}
	c.kept = nil
	return nil
}

// Close closes the descriptor and forgets the MACs it held.
func (c *TapConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.f.Close()
	c.forget()
	if c.o.OnClose != nil {
		c.o.OnClose()
	}
	return err
}

// forget drops the tap's held MACs from MACs, for good.
func (c *TapConn) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for m := range c.held {
		c.o.MACs.Drop(m)
	}
	clear(c.held)
}
