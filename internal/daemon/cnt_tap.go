package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/tux"
)

// A container node's eth (machine/cnt): the switch makes a tap under the
// name the kind chose, keeps its descriptor as the port's one peer, and
// the kind moves the interface into the node. Frames carry a
// virtio_net_hdr, and the tap has checksum and TSO offloads, as the tap
// tux: the node's kernel hands over TCP segments of up to 64 KiB with
// partial checksums. Such a super frame crosses the switch whole only
// toward a MAC learnt on another node's tap (which takes it whole again,
// with a GSO header, so the receiving kernel never cuts it); toward any
// other port it is cut here into ordinary frames with full checksums
// (tux.SegmentTCP), as a NIC would. Without offloads, every 1500-byte
// frame cost a read, a switch hop and a write (bench/cnt: 0.25x a Linux
// bridge; docs/benchmarks.md).

// Offloads of linux/if_tun.h and virtio_net_hdr values (linux/virtio_net.h).
const (
	tunFCsum      = 0x01
	tunFTSO4      = 0x02
	tunFTSO6      = 0x04
	vnetNeedsCsum = 1
	gsoTCPv4      = 1
	gsoTCPv6      = 4
	gsoECN        = 0x80
	// tapMTU is the nodes' eth MTU: super frames written to a tap are
	// marked for segments of this size.
	tapMTU = 1500
	// tapRead holds any frame a tap hands over: a GSO segment may be a
	// full 64 KiB IP packet plus its Ethernet header, over the switch's
	// frame limit (then it is cut), and a short read would truncate it.
	tapRead = cnt.VnetHdrLen + 65536 + 18 + 64
)

// cntMACs holds the MACs seen on the switch's node taps (MAC -> count of
// taps): the destinations that take super frames. It is per process: a
// switch process runs one daemon. A tap forgets its MACs when it closes,
// so a guest of another kind reusing a node's name (and MAC) never gets
// super frames.
var cntMACs struct {
	sync.Mutex
	m map[uint64]int
}

func macKey(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// takesSuper tells whether frame b's destination is a node's tap.
func takesSuper(b []byte) bool {
	if b[0]&1 != 0 {
		return false
	}
	cntMACs.Lock()
	defer cntMACs.Unlock()
	return cntMACs.m[macKey(b)] > 0
}

// tapListener hands out its tap once, then waits for Close.
type tapListener struct {
	name   string
	conn   *tapConn
	once   sync.Once
	closed chan struct{}
}

// taps are the open taps by name, for their carrier (vmlife.go).
var taps sync.Map

func listenTap(name string) (fabric.Listener, error) {
	f, err := cnt.OpenTap(name, tunFCsum|tunFTSO4|tunFTSO6)
	if err != nil {
		return nil, err
	}
	c := &tapConn{f: f, buf: make([]byte, tapRead), scratch: make([]byte, fabric.MaxFrame), macs: map[uint64]bool{}}
	taps.Store(name, c)
	return &tapListener{name: name, conn: c, closed: make(chan struct{})}, nil
}

// tapCarrier sets the carrier of the switch's tap name.
func tapCarrier(name string, up bool) error {
	c, ok := taps.Load(name)
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
		taps.CompareAndDelete(l.name, l.conn)
		l.conn.Close()
	}
	return nil
}

func (l *tapListener) Addr() string { return l.name }

// tapConn reads and writes a tap's frames behind their virtio header.
type tapConn struct {
	f       *os.File
	buf     []byte // one read: header and frame
	scratch []byte // segments being cut
	pending []*fabric.Frame
	macs    map[uint64]bool // source MACs learnt here (in cntMACs); guarded by cntMACs
	closed  bool            // guarded by cntMACs
	lastSrc uint64
	hdr     [cnt.VnetHdrLen]byte
	once    sync.Once
}

// learn records frame b's source MAC in cntMACs (once per MAC, not once
// the tap is closed).
func (c *tapConn) learn(b []byte) {
	src := macKey(b[6:12])
	if src == c.lastSrc || b[6]&1 != 0 {
		return
	}
	c.lastSrc = src
	cntMACs.Lock()
	defer cntMACs.Unlock()
	if c.closed || c.macs[src] {
		return
	}
	if cntMACs.m == nil {
		cntMACs.m = map[uint64]int{}
	}
	cntMACs.m[src]++
	c.macs[src] = true
}

func (c *tapConn) ReadFrame() (*fabric.Frame, error) {
	for {
		if len(c.pending) > 0 {
			f := c.pending[0]
			c.pending[0] = nil
			c.pending = c.pending[1:]
			return f, nil
		}
		n, err := c.f.Read(c.buf)
		if err != nil {
			return nil, err
		}
		if n < cnt.VnetHdrLen+fabric.MinFrame {
			continue
		}
		flags, gso := c.buf[0], c.buf[1]&^gsoECN
		gsoSize := int(binary.LittleEndian.Uint16(c.buf[4:]))
		start, off := int(binary.LittleEndian.Uint16(c.buf[6:])), int(binary.LittleEndian.Uint16(c.buf[8:]))
		b := c.buf[cnt.VnetHdrLen:n]
		c.learn(b)
		if gso != 0 && len(b) > tux.StdFrame {
			if len(b) <= fabric.MaxFrame && takesSuper(b) {
				return frameOf(b), nil // partial checksum kept: the switch's rule
			}
			c.cut(b, gsoSize)
			continue
		}
		if flags&vnetNeedsCsum != 0 && !completeCsum(b, start, off) {
			continue
		}
		return frameOf(b), nil
	}
}

// cut queues super frame b cut into segments of mss bytes of payload:
// ordinary frames with full checksums, or, when b is too long for the
// switch but goes to another node, super frames of up to 60000 bytes.
func (c *tapConn) cut(b []byte, mss int) {
	if mss <= 0 {
		mss = tux.MSSFor(b, tapMTU)
	}
	size, partial := mss, false
	if takesSuper(b) {
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

// completeCsum finishes a partial checksum at start/off, as a NIC would
// for VIRTIO_NET_HDR_F_NEEDS_CSUM.
func completeCsum(b []byte, start, off int) bool {
	if start > len(b) || start+off+2 > len(b) {
		return false
	}
	init := binary.BigEndian.Uint16(b[start+off:])
	b[start+off], b[start+off+1] = 0, 0
	binary.BigEndian.PutUint16(b[start+off:], ^checksum.Checksum(b[start:], init))
	return true
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
		l4, typ = l3+int(b[l3]&0x0f)*4, gsoTCPv4
	case et == 0x86dd && len(b) >= l3+40 && b[l3+6] == 6:
		l4, typ = l3+40, gsoTCPv6
	default:
		return
	}
	if len(b) < l4+20 {
		return
	}
	hl := l4 + int(b[l4+12]>>4)*4
	h[0], h[1] = vnetNeedsCsum, typ
	binary.LittleEndian.PutUint16(h[2:], uint16(hl))
	binary.LittleEndian.PutUint16(h[4:], uint16(tapMTU-(hl-l3)))
	binary.LittleEndian.PutUint16(h[6:], uint16(l4))
	binary.LittleEndian.PutUint16(h[8:], 16)
}

func (c *tapConn) WriteFrame(b []byte) error {
	gsoHeader(c.hdr[:], b)
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		_, werr = unix.Writev(int(fd), [][]byte{c.hdr[:], b})
		return werr != unix.EAGAIN && werr != unix.EINTR
	}); err != nil {
		return err
	}
	if errors.Is(werr, unix.EIO) || errors.Is(werr, unix.EINVAL) {
		return nil // interface down, or frame refused: dropped
	}
	return werr
}

func (c *tapConn) Flush() error { return nil }

func (c *tapConn) Close() error {
	c.once.Do(func() {
		c.f.Close()
		c.forget()
	})
	return nil
}

// forget takes the tap's MACs out of cntMACs, for good.
func (c *tapConn) forget() {
	cntMACs.Lock()
	defer cntMACs.Unlock()
	c.closed = true
	for m := range c.macs {
		if cntMACs.m[m]--; cntMACs.m[m] <= 0 {
			delete(cntMACs.m, m)
		}
	}
}
