package tux

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/rawio"
	"cloonix/internal/wire"
)

// tapConn is the switch's side of a tap tux: the port reads and writes
// the tap's descriptor itself (the helper made the interface and gave
// the switch a copy; it keeps the privileges, the switch the data). No
// process hop per frame: a frame from a tap goes, in the port's reader,
// from the tap's read straight into the fabric, and toward another tap
// or idle peer out with one writev from the same goroutine (TryWriter).
//
// It lives beside gso.go (the virtio-net header, checksum completion,
// TCP segmentation), which it uses; wire holds the transports that need
// none of that.
//
// Reads: the tap has IFF_VNET_HDR with TSO/checksum offloads, so the
// host's TCP segments arrive whole (up to 64 KiB) with a GSO header. One
// readv puts the header aside and the frame straight into a 64 KiB
// frame buffer; a frame no larger than a standard one moves into a small
// buffer (Shrink). Super frames cross the switch whole toward MACs learnt
// behind offload conns and taps (wire.MACSet), and are cut into standard
// frames with full checksums toward anything else.
//
// Writes: a frame larger than the tap's MTU allows goes to the kernel
// whole with a GSO header (the kernel cuts it if it must leave on a
// wire); anything else with an empty header.
type tapConn struct {
	file *os.File
	rc   syscall.RawConn
	sock net.Conn // the helper's socket: closed with the conn
	name string
	mtu  int
	macs *wire.MACSet

	hdr      [hosttap.VnetHdrLen]byte
	over     []byte // what does not fit a frame buffer (a GSO frame of 64 KiB + headers)
	pending  []*fabric.Frame
	ahead    *fabric.Frame // a frame read ahead, so Buffered can tell the tap has more
	scratch  []byte
	lastSrc  uint64
	whdr     [hosttap.VnetHdrLen]byte
	iov      [2][]byte
	rxF, rxB atomic.Uint64
	txF, txB atomic.Uint64
	drops    atomic.Uint64
	closed   atomic.Bool
}

// newTapConn takes a duplicate of the held tap descriptor (the helper
// supervision keeps the original across relaunches).
func newTapConn(held *os.File, sock net.Conn, name string, mtu int, macs *wire.MACSet) (*tapConn, error) {
	fd, err := unix.FcntlInt(held.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: dup: %v", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "tap "+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	if mtu <= 0 {
		mtu = guestMTU
	}
	return &tapConn{file: f, rc: rc, sock: sock, name: name, mtu: mtu, macs: macs,
		over: make([]byte, hosttap.MaxRead-fabric.MaxFrame), scratch: make([]byte, fabric.MaxFrame)}, nil
}

// stats are the tap's counters as the helper's were: Rx from the tap
// into the switch, Tx from the switch to the tap.
func (c *tapConn) stats() Stats {
	return Stats{State: "up", RxFrames: c.rxF.Load(), RxBytes: c.rxB.Load(), TxFrames: c.txF.Load(), TxBytes: c.txB.Load(), Drops: c.drops.Load()}
}

// Buffered tells the fabric's reader whether frames are already read,
// so it batches them before handing anything over.
func (c *tapConn) Buffered() int {
	n := len(c.pending)
	if c.ahead == nil {
		c.ahead = c.readOnce(false)
	}
	if c.ahead != nil {
		n++
	}
	return n
}

// ReadFrame returns the next frame from the tap.
func (c *tapConn) ReadFrame() (*fabric.Frame, error) {
	for {
		if len(c.pending) > 0 {
			f := c.pending[0]
			c.pending[0] = nil
			c.pending = c.pending[1:]
			return f, nil
		}
		f := c.ahead
		c.ahead = nil
		if f == nil {
			f = c.readOnce(true)
		}
		if f == nil {
			if c.closed.Load() {
				return nil, net.ErrClosed
			}
			return nil, fmt.Errorf("reading tap %s: %w", c.name, errTapGone)
		}
		if f = c.take(f); f != nil {
			return f, nil
		}
	}
}

var errTapGone = errors.New("the tap is gone")

// readOnce reads one frame; wait says to wait for one (else nil when the
// tap has none now). nil with wait means the tap failed or was closed.
func (c *tapConn) readOnce(wait bool) *fabric.Frame {
	f := fabric.NewFrame(fabric.MaxFrame)
	iov := [][]byte{c.hdr[:], f.Buf(), c.over}
	n := -1
	for n < 0 {
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			var e syscall.Errno
			n, e = rawio.IOV(unix.SYS_READV, fd, iov)
			rerr = nil
			if e != 0 {
				rerr = e
			}
			if rerr == unix.EINTR {
				return false
			}
			return rerr != unix.EAGAIN || !wait
		})
		switch {
		case err != nil:
			f.Release()
			return nil
		case rerr == unix.EAGAIN || rerr == unix.EINTR:
			f.Release()
			if !wait {
				return nil
			}
			n = -1
		case rerr != nil:
			f.Release()
			return nil
		}
	}
	if n < hosttap.VnetHdrLen+fabric.MinFrame {
		c.drops.Add(1)
		f.N = 0
		return f // take drops it
	}
	f.N = n - hosttap.VnetHdrLen
	return f
}

// take applies the virtio-net header read with f: the frame to pass on
// (cut super frames are queued in pending), or nil when dropped.
func (c *tapConn) take(f *fabric.Frame) *fabric.Frame {
	if f.N == 0 {
		f.Release()
		return nil
	}
	var h vnetHdr
	h.decode(c.hdr[:])
	n := f.N
	if n > fabric.MaxFrame {
		return c.cutLong(f, h)
	}
	b := f.Bytes()
	c.rxF.Add(1)
	c.rxB.Add(uint64(n))
	if src := wire.MACOf(b[6:12]); src != c.lastSrc && b[6]&1 == 0 {
		c.lastSrc = c.macs.Learn(b)
	}
	if h.gsoType&^hosttap.GSOECN != hosttap.GSONone && n > StdFrame {
		// A super frame with its checksum partial: whole to whoever
		// takes it whole, cut with full checksums for the others.
		if c.macs.TakesSuper(b) {
			return f
		}
		mss := MSSFor(b, guestMTU)
		if mss > 0 && SegmentTCP(b, mss, true, c.scratch, c.queueCopy) {
			f.Release()
			return nil
		}
		c.drops.Add(1)
		f.Release()
		return nil
	}
	if h.flags&hosttap.NeedsCsum != 0 && !CompleteChecksum(b, int(h.csumStart), int(h.csumOffset)) {
		c.drops.Add(1)
		f.Release()
		return nil
	}
	return f.Shrink()
}

func (c *tapConn) queueCopy(s []byte) {
	nf := fabric.NewFrame(len(s))
	copy(nf.Bytes(), s)
	c.pending = append(c.pending, nf)
}

// cutLong handles a GSO frame longer than a switch frame (64 KiB of TCP
// plus headers): it goes on as super frames of at most 60000 bytes of
// payload, cut at MSS boundaries.
func (c *tapConn) cutLong(f *fabric.Frame, h vnetHdr) *fabric.Frame {
	n := f.N
	whole := make([]byte, n)
	copy(whole, f.Buf())
	copy(whole[fabric.MaxFrame:], c.over[:n-fabric.MaxFrame])
	f.Release()
	mss := int(h.gsoSize)
	if mss == 0 {
		mss = 1448
	}
	c.rxF.Add(1)
	c.rxB.Add(uint64(n))
	if !SegmentTCP(whole, (60000/mss)*mss, true, c.scratch, c.queueCopy) {
		c.drops.Add(1)
	}
	return nil
}

// WriteFrame writes one frame to the tap at once (a tap takes one frame
// per write; nothing to gather).
func (c *tapConn) WriteFrame(b []byte) error {
	h := vnetHdr{}
	if len(b) > c.mtu+18 {
		if ti, ok := parseTCP(b); ok {
			h.flags = hosttap.NeedsCsum
			h.gsoType = hosttap.GSOTCPv4
			if ti.v6 {
				h.gsoType = hosttap.GSOTCPv6
			}
			h.hdrLen = uint16(ti.hdrEnd())
			h.gsoSize = uint16(c.mtu - (ti.l4 - ti.l3) - ti.thl)
			h.csumStart = uint16(ti.l4)
			h.csumOffset = 16
		}
	}
	h.encode(c.whdr[:])
	c.iov[0], c.iov[1] = c.whdr[:], b
	var err error
	if werr := c.rc.Write(func(fd uintptr) bool {
		err = nil
		if _, e := rawio.IOV(unix.SYS_WRITEV, fd, c.iov[:]); e != 0 {
			err = e
		}
		return err != unix.EAGAIN && err != unix.EINTR
	}); werr != nil {
		return fmt.Errorf("writing tap %s: %v", c.name, werr)
	}
	c.iov[1] = nil
	if err != nil {
		if err == unix.EIO || err == unix.EINVAL {
			c.drops.Add(1) // interface down or frame refused
			return nil
		}
		return fmt.Errorf("writing tap %s: %v", c.name, err)
	}
	c.txF.Add(1)
	c.txB.Add(uint64(len(b)))
	return nil
}

// WriteNow writes frames from the caller (the sending port's reader):
// a tap write never waits for room, so nothing is ever kept.
func (c *tapConn) WriteNow(frames []*fabric.Frame) (bool, error) {
	for _, f := range frames {
		if err := c.WriteFrame(f.Bytes()); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Flush has nothing to do: every write went out at once.
func (c *tapConn) Flush() error { return nil }

// Close closes this copy of the tap (the held one stays) and the
// helper's socket.
func (c *tapConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.sock.Close()
	return c.file.Close()
}
