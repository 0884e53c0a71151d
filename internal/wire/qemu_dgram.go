package wire

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"cloonix/internal/fabric"
)

// QEMU's `-netdev dgram` with unix sockets sends one frame per datagram
// from its own bound socket (local.path) to ours (remote.path). We answer
// the address the last frame came from, so a restarted QEMU is followed.
// A datagram socket has no connection: the port counts as connected from
// the first datagram a peer sends.

// DgramConn is the switch's bound datagram socket and the peer it learnt.
type DgramConn struct {
	c       *net.UnixConn
	peer    atomic.Pointer[net.UnixAddr]
	pending *fabric.Frame // the datagram that announced the peer
	skipped int           // bad datagrams before it, counted once handed over
}

// read returns the next datagram; one of a bad size is an ErrSkip error,
// since each datagram stands alone.
func (d *DgramConn) read() (*fabric.Frame, error) {
	f := fabric.NewFrame(fabric.MaxFrame)
	n, _, flags, addr, err := d.c.ReadMsgUnix(f.Buf()[:fabric.MaxFrame], nil)
	if err != nil {
		f.Release()
		return nil, err
	}
	if flags&syscall.MSG_TRUNC != 0 || n < fabric.MinFrame {
		f.Release()
		if flags&syscall.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("%w: %w: datagram over %d bytes", fabric.ErrSkip, ErrFrameSize, fabric.MaxFrame)
		}
		return nil, fmt.Errorf("%w: %w: datagram of %d bytes", fabric.ErrSkip, ErrFrameSize, n)
	}
	if addr != nil && addr.Name != "" {
		if p := d.peer.Load(); p == nil || p.Name != addr.Name {
			d.peer.Store(addr)
		}
	}
	f.N = n
	return f.Shrink(), nil
}

// ReadFrame returns the next datagram of a valid size (see read).
func (d *DgramConn) ReadFrame() (*fabric.Frame, error) {
	if d.skipped > 0 {
		d.skipped--
		return nil, fmt.Errorf("%w: %w: refused before the peer was known", fabric.ErrSkip, ErrFrameSize)
	}
	if f := d.pending; f != nil {
		d.pending = nil
		return f, nil
	}
	return d.read()
}

// WriteFrame sends one datagram to the peer; before any peer spoke it is
// dropped (there is nobody to send to).
func (d *DgramConn) WriteFrame(b []byte) error {
	p := d.peer.Load()
	if p == nil {
		return nil
	}
	_, err := d.c.WriteToUnix(b, p)
	return err
}

// Flush does nothing: each datagram is sent at once.
func (d *DgramConn) Flush() error { return nil }

// Close closes the socket.
func (d *DgramConn) Close() error { return d.c.Close() }

// DgramListener hands out its one socket as the port's conn once a peer
// has sent its first frame.
type DgramListener struct {
	conn   *DgramConn
	path   string
	handed bool // Accept is called from one goroutine only
	done   chan struct{}
	closed atomic.Bool
}

// ListenDgram binds a unix datagram socket at path.
func ListenDgram(path string) (*DgramListener, error) {
	if err := prepareUnixPath(path); err != nil {
		return nil, err
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	return &DgramListener{conn: &DgramConn{c: c}, path: path, done: make(chan struct{})}, nil
}

// Accept waits for the first valid datagram and returns the socket with
// that frame pending; later calls block until Close.
func (l *DgramListener) Accept() (fabric.Conn, error) {
	if l.handed {
		<-l.done
		return nil, net.ErrClosed
	}
	for {
		f, err := l.conn.read()
		if errors.Is(err, fabric.ErrSkip) {
			l.conn.skipped++
			continue
		}
		if err != nil {
			return nil, err
		}
		l.conn.pending = f
		l.handed = true
		return l.conn, nil
	}
}

// Close closes the socket and removes it.
func (l *DgramListener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	close(l.done)
	err := l.conn.Close()
	_ = removeSocket(l.path)
	return err
}

// Addr is the socket path.
func (l *DgramListener) Addr() string { return l.path }
