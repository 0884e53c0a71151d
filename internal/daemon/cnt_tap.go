package daemon

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/rawio"
	"cloonix/internal/tux"
	"cloonix/internal/wire"
)

// A container node's eth (machine/cnt): the switch makes a tap under the
// name the kind chose, keeps its descriptor as the port's one peer, and
// the kind moves the interface into the node. Frames carry a
// virtio_net_hdr, and the tap has checksum and TSO offloads, as the tap
// tux: the node's kernel hands over TCP segments of up to 64 KiB with
// partial checksums. Such a super frame crosses the switch whole only
// toward a MAC learnt on another node's tap (which takes it whole again,
// with a GSO header, so the receiving kernel never cuts it) or behind a
// tap tux (the daemon's wire.MACSet, shared with the tux); toward any
// other port it is cut here into ordinary frames with full checksums
// (tux.SegmentTCP), as a NIC would. Without offloads, every 1500-byte
// frame cost a read, a switch hop and a write (bench/cnt: 0.25x a Linux
// bridge; docs/benchmarks.md).

// tapMTU is the nodes' eth MTU: super frames written to a tap are marked
// for segments of this size.
const tapMTU = 1500

// tapListener hands out its tap once, then waits for Close.
type tapListener struct {
	name    string
	conn    *tapConn
	onClose func() // before the conn closes
	once    sync.Once
	closed  chan struct{}
}

// cntTaps are the daemon's open node taps by name, for their carrier
// (vmlife.go).
type cntTaps struct{ m sync.Map } // name -> *tapConn

func (d *Daemon) listenTap(name string) (fabric.Listener, error) {
	f, err := hosttap.Open(name, hosttap.Offloads)
	if err != nil {
		return nil, err
	}
	c, err := newTapConn(f, &d.tuxSh.macs)
	if err != nil {
		return nil, err
	}
	d.cntTaps.m.Store(name, c)
	return newTapListener(name, c, func() { d.cntTaps.m.CompareAndDelete(name, c) }), nil
}

func newTapListener(name string, c *tapConn, onClose func()) *tapListener {
	return &tapListener{name: name, conn: c, onClose: onClose, closed: make(chan struct{})}
}

// tapCarrier sets the carrier of the switch's tap name.
func (d *Daemon) tapCarrier(name string, up bool) error {
	c, ok := d.cntTaps.m.Load(name)
	if !ok {
		return machine.ErrNoCarrier
	}
	return cnt.SetTapCarrier(c.(*tapConn).f, up)
}

func (l *tapListener) Accept() (fabric.Conn, error) {
	var c fabric.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, fmt.Errorf("tap %s: closed", l.name)
}

func (l *tapListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
		l.onClose()
		l.conn.Close()
	}
	return nil
}

func (l *tapListener) Addr() string { return l.name }

// tapConn reads and writes a tap's frames behind their virtio header.
type tapConn struct {
	f       *os.File
	rc      syscall.RawConn
	buf     []byte // a frame longer than a switch frame; its tail is read here
	scratch []byte // segments being cut
	pending []*fabric.Frame
	macs    *wire.MACSet // the daemon's: destinations taking super frames
	mu      sync.Mutex
	held    map[uint64]bool // source MACs held in macs; guarded by mu
	closed  bool            // guarded by mu
	lastSrc uint64
	hdr     [hosttap.VnetHdrLen]byte // the last read's
	whdr    [hosttap.VnetHdrLen]byte // the last write's
	iov     [3][]byte
	wiov    [2][]byte
	kept    []*fabric.Frame // copies WriteNow could not write, for Flush
	once    sync.Once
}

func newTapConn(f *os.File, macs *wire.MACSet) (*tapConn, error) {
	var rc syscall.RawConn
	if f != nil { // nil: a test's, cutting and learning only
		var err error
		if rc, err = f.SyscallConn(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &tapConn{f: f, rc: rc, buf: make([]byte, hosttap.MaxRead-hosttap.VnetHdrLen), scratch: make([]byte, fabric.MaxFrame),
		macs: macs, held: map[uint64]bool{}}, nil
}

// learn holds frame b's source MAC in macs (once per MAC, not once the
// tap is closed): the tap forgets its MACs when it closes.
func (c *tapConn) learn(b []byte) {
	src := wire.MACOf(b[6:12])
	if src == c.lastSrc || b[6]&1 != 0 {
		return
	}
	c.lastSrc = src
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.held[src] {
		return
	}
	c.macs.Hold(src)
	c.held[src] = true
}

func (c *tapConn) ReadFrame() (*fabric.Frame, error) {
	for {
		if len(c.pending) > 0 {
			f := c.pending[0]
			c.pending[0] = nil
			c.pending = c.pending[1:]
			return f, nil
		}
		f, b, err := c.read()
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		flags, gso := c.hdr[0], c.hdr[1]&^hosttap.GSOECN
		gsoSize := int(binary.LittleEndian.Uint16(c.hdr[4:]))
		start, off := int(binary.LittleEndian.Uint16(c.hdr[6:])), int(binary.LittleEndian.Uint16(c.hdr[8:]))
		c.learn(b)
		if gso != 0 && len(b) > tux.StdFrame {
			if f != nil && c.macs.TakesSuper(b) {
				return f, nil // partial checksum kept: the switch's rule
			}
			c.cut(b, gsoSize)
			if f != nil {
				f.Release()
			}
			continue
		}
		if f == nil {
			continue // too long and no GSO: not a frame
		}
		if flags&hosttap.NeedsCsum != 0 && !tux.CompleteChecksum(b, start, off) {
			f.Release()
			continue
		}
		return f.Shrink(), nil
	}
}

// read reads one header into hdr and its frame straight into a frame
// buffer: the frame f and its bytes b. A GSO frame longer than a switch
// frame comes back in buf only (f nil), to be cut; a runt as b nil.
func (c *tapConn) read() (f *fabric.Frame, b []byte, err error) {
	f = fabric.NewFrame(fabric.MaxFrame)
	c.iov = [3][]byte{c.hdr[:], f.Buf(), c.buf[fabric.MaxFrame:]}
	iov := c.iov[:] // a field: no allocation per read
	var n int
	var e syscall.Errno
	if err := c.rc.Read(func(fd uintptr) bool {
		n, e = rawio.IOV(unix.SYS_READV, fd, iov)
		return e != unix.EAGAIN
	}); err != nil {
		f.Release()
		return nil, nil, err
	}
	n -= hosttap.VnetHdrLen
	switch {
	case e == unix.EINVAL, e == unix.EINTR:
		// EINVAL: a packet socket's frame whose GSO it cannot describe
		// (vtap.go), dropped.
		f.Release()
		return nil, nil, nil
	case e != 0:
		f.Release()
		return nil, nil, e
	case n < fabric.MinFrame:
		f.Release()
		return nil, nil, nil
	case n > fabric.MaxFrame:
		copy(c.buf, f.Buf())
		f.Release()
		return nil, c.buf[:n], nil
	}
	f.N = n
	return f, f.Bytes(), nil
}

// cut queues super frame b cut into segments of mss bytes of payload:
// ordinary frames with full checksums, or, when b is too long for the
// switch but goes to another node, super frames of up to 60000 bytes.
func (c *tapConn) cut(b []byte, mss int) {
	if mss <= 0 {
		mss = tux.MSSFor(b, tapMTU)
	}
	size, partial := mss, false
	if c.macs.TakesSuper(b) {
		size, partial = (60000/mss)*mss, true
	}
	c.pending = c.pending[:0]
	tux.SegmentTCP(b, size, partial, c.scratch, func(s []byte) { c.pending = append(c.pending, frameOf(s)) })
}

func frameOf(b []byte) *fabric.Frame {
	fr := fabric.NewFrame(len(b))
	copy(fr.Bytes(), b)
	return fr
}

// gsoHeader fills h for frame b: a TCP super frame (partial checksum, as
// the switch carries them) gets the GSO fields so the node's kernel takes
// it as one segment; any other frame gets a zero header.
func gsoHeader(h []byte, b []byte) {
	clear(h)
	if len(b) <= tapMTU+18 || len(b) < 14 {
		return
	}
	l3 := 14
	et := binary.BigEndian.Uint16(b[12:])
	if et == 0x8100 && len(b) >= 18 {
		l3, et = 18, binary.BigEndian.Uint16(b[16:])
	}
	var l4 int
	var typ byte
	switch {
	case et == 0x0800 && len(b) >= l3+20 && b[l3+9] == 6:
		l4, typ = l3+int(b[l3]&0x0f)*4, hosttap.GSOTCPv4
	case et == 0x86dd && len(b) >= l3+40 && b[l3+6] == 6:
		l4, typ = l3+40, hosttap.GSOTCPv6
	default:
		return
	}
	if len(b) < l4+20 {
		return
	}
	hl := l4 + int(b[l4+12]>>4)*4
	h[0], h[1] = hosttap.NeedsCsum, typ
	binary.LittleEndian.PutUint16(h[2:], uint16(hl))
	binary.LittleEndian.PutUint16(h[4:], uint16(tapMTU-(hl-l3)))
	binary.LittleEndian.PutUint16(h[6:], uint16(l4))
	binary.LittleEndian.PutUint16(h[8:], 16)
}

func (c *tapConn) WriteFrame(b []byte) error {
	if err := c.Flush(); err != nil { // what WriteNow kept goes first
		return err
	}
	return c.write(b, true)
}

// write writes frame b behind its header: when wait, as long as the tap
// (or a vtap's packet socket) has no room; otherwise EAGAIN says so.
// Frames the interface refuses (down, or a frame it cannot take) are
// dropped.
func (c *tapConn) write(b []byte, wait bool) error {
	gsoHeader(c.whdr[:], b)
	c.wiov = [2][]byte{c.whdr[:], b}
	iov := c.wiov[:] // a field: no allocation per write
	var e syscall.Errno
	if err := c.rc.Write(func(fd uintptr) bool {
		_, e = rawio.IOV(unix.SYS_WRITEV, fd, iov)
		return !wait || (e != unix.EAGAIN && e != unix.EINTR)
	}); err != nil {
		return err
	}
	c.wiov[1] = nil
	switch e {
	case 0:
		return nil
	case unix.EAGAIN, unix.EINTR:
		return unix.EAGAIN
	case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.ENOBUFS, unix.ENETDOWN, unix.ENXIO:
		return nil // interface down, or frame refused (a packet socket's too, vtap.go): dropped
	}
	return e
}

// WriteNow writes frames from the caller (the sending port's reader, as
// the tap tux does): no hand-over to the port's writer goroutine. A tap
// takes a frame at once or never; what finds no room (a vtap's socket
// buffer full) is copied and kept for Flush, in the writer goroutine.
func (c *tapConn) WriteNow(frames []*fabric.Frame) (bool, error) {
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
func (c *tapConn) Flush() error {
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

func (c *tapConn) Close() error {
	c.once.Do(func() {
		c.f.Close()
		c.forget()
	})
	return nil
}

// forget drops the tap's MACs from macs, for good.
func (c *tapConn) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for m := range c.held {
		c.macs.Drop(m)
	}
}
