package wire

import (
	"net"
	"sync"
	"sync/atomic"

	"cloonix/internal/fabric"
)

// QEMU's `-netdev dgram` with unix sockets sends one frame per datagram
// from its own bound socket (local.path) to ours (remote.path). We answer
// the address the last frame came from, so a restarted QEMU is followed.

// DgramConn is the switch's bound datagram socket and the peer it learnt.
type DgramConn struct {
	c    *net.UnixConn
	peer atomic.Pointer[net.UnixAddr]
	// Drops counts datagrams refused for their size.
	Drops atomic.Uint64
}

// ReadFrame returns the next datagram of a valid size; others are dropped
// and counted, since each datagram stands alone.
func (d *DgramConn) ReadFrame() (*fabric.Frame, error) {
	for {
		f := fabric.NewFrame(fabric.MaxFrame)
		n, addr, err := d.c.ReadFromUnix(f.Buf())
		if err != nil {
			f.Release()
			return nil, err
		}
		if n < fabric.MinFrame || n > fabric.MaxFrame {
			f.Release()
			d.Drops.Add(1)
			continue
		}
		if addr != nil && addr.Name != "" {
			if p := d.peer.Load(); p == nil || p.Name != addr.Name {
				d.peer.Store(addr)
			}
		}
		f.N = n
		return f.Shrink(), nil
	}
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

// DgramListener hands out its one socket as the port's conn, once.
type DgramListener struct {
	conn *DgramConn
	path string
	once sync.Once
	done chan struct{}
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

// Accept returns the socket the first time, then blocks until Close.
func (l *DgramListener) Accept() (fabric.Conn, error) {
	var c fabric.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

// Close closes the socket and removes it.
func (l *DgramListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	err := l.conn.Close()
	_ = removeSocket(l.path)
	return err
}

// Addr is the socket path.
func (l *DgramListener) Addr() string { return l.path }
