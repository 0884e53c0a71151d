package daemon

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
)

// A container node's eth (machine/cnt): the switch makes a tap under the
// name the kind chose, keeps its descriptor as the port's one peer, and
// the kind moves the interface into the node. Frames carry a
// virtio_net_hdr; the tap is made without offloads, so the node's kernel
// hands over whole, checksummed frames (no super frames to cut here).

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
	f, err := cnt.OpenTap(name, 0)
	if err != nil {
		return nil, err
	}
	l := &tapListener{name: name, conn: &tapConn{f: f, buf: make([]byte, cnt.VnetHdrLen+fabric.MaxFrame)}, closed: make(chan struct{})}
	taps.Store(name, l.conn)
	return l, nil
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
	f    *os.File
	buf  []byte
	hdr  [cnt.VnetHdrLen]byte // all zero: no offload asked of the kernel
	once sync.Once
}

func (c *tapConn) ReadFrame() (*fabric.Frame, error) {
	for {
		n, err := c.f.Read(c.buf)
		if err != nil {
			return nil, err
		}
		n -= cnt.VnetHdrLen
		if n < fabric.MinFrame {
			continue
		}
		fr := fabric.NewFrame(n)
		copy(fr.Bytes(), c.buf[cnt.VnetHdrLen:cnt.VnetHdrLen+n])
		return fr, nil
	}
}

func (c *tapConn) WriteFrame(b []byte) error {
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
	c.once.Do(func() { c.f.Close() })
	return nil
}
