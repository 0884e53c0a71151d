package wire

import (
	"net"
	"syscall"

	"cloonix/internal/fabric"
)

// UML's vector driver with transport=bess (vecN:transport=bess,dst=SOCK)
// connects a unix SOCK_SEQPACKET socket to the switch and sends one raw
// Ethernet frame per packet, no header. Packet boundaries are kept by the
// kernel, so a bad packet is dropped alone and the stream stays in step.

// BessConn is one connected seqpacket peer.
type BessConn struct {
	c *net.UnixConn
}

// ReadFrame returns the next packet of a valid size; a packet that is too
// short or was truncated (longer than 65535 bytes) is skipped.
func (b *BessConn) ReadFrame() (*fabric.Frame, error) {
	for {
		f := fabric.NewFrame(fabric.MaxFrame)
		n, _, flags, _, err := b.c.ReadMsgUnix(f.Buf(), nil)
		if err != nil {
			f.Release()
			return nil, err
		}
		if n == 0 && flags&syscall.MSG_TRUNC == 0 {
			// A zero-length read on a seqpacket socket is the peer's close.
			f.Release()
			return nil, net.ErrClosed
		}
		if n < fabric.MinFrame || flags&syscall.MSG_TRUNC != 0 {
			f.Release()
			continue
		}
		f.N = n
		return f.Shrink(), nil
	}
}

// WriteFrame sends one frame as one packet.
func (b *BessConn) WriteFrame(p []byte) error {
	_, err := b.c.Write(p)
	return err
}

// Flush does nothing: each packet leaves at once.
func (b *BessConn) Flush() error { return nil }

// Close closes the socket.
func (b *BessConn) Close() error { return b.c.Close() }

// BessListener accepts bess peers on a unix seqpacket socket.
type BessListener struct {
	l    *net.UnixListener
	path string
}

// ListenBess listens on a unix SOCK_SEQPACKET socket at path.
func ListenBess(path string) (*BessListener, error) {
	l, err := unixListen("unixpacket", path)
	if err != nil {
		return nil, err
	}
	return &BessListener{l: l, path: path}, nil
}

// Accept waits for the next peer.
func (l *BessListener) Accept() (fabric.Conn, error) {
	c, err := l.l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	return &BessConn{c: c}, nil
}

// Close stops listening and removes the socket.
func (l *BessListener) Close() error { return l.l.Close() }

// Addr is the socket path.
func (l *BessListener) Addr() string { return l.path }
