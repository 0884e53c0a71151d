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
	c    *net.UnixConn
	rc   syscall.RawConn
	kept [][]byte // packets the socket did not take in WriteNow, in order
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

// WriteFrame sends one frame as one packet, after any kept ones.
func (b *BessConn) WriteFrame(p []byte) error {
	if err := b.Flush(); err != nil {
		return err
	}
	_, err := b.c.Write(p)
	return err
}

// Flush sends the packets WriteNow kept (waiting for room).
func (b *BessConn) Flush() error {
	for len(b.kept) > 0 {
		if _, err := b.c.Write(b.kept[0]); err != nil {
			return err
		}
		b.kept[0] = nil
		b.kept = b.kept[1:]
	}
	b.kept = nil
	return nil
}

// WriteNow sends frames from the caller without waiting (fabric.TryWriter):
// a UML guest is then fed from the sending port's goroutine, with no
// hand-over to the port's writer. What the socket does not take is
// copied, in order, for Flush.
func (b *BessConn) WriteNow(fs []*fabric.Frame) (bool, error) {
	i := 0
	if len(b.kept) == 0 && b.rc != nil {
		var werr error
		err := b.rc.Write(func(fd uintptr) bool {
			for i < len(fs) {
				_, werr = syscall.Write(int(fd), fs[i].Bytes())
				if werr == syscall.EINTR {
					continue
				}
				if werr != nil {
					break
				}
				i++
			}
			return true // never wait here
		})
		if err != nil {
			return false, err
		}
		if werr != nil && werr != syscall.EAGAIN {
			return false, werr
		}
	}
	for _, f := range fs[i:] {
		b.kept = append(b.kept, append([]byte(nil), f.Bytes()...))
	}
	return len(b.kept) > 0, nil
}

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
	rc, _ := c.SyscallConn()
	return &BessConn{c: c, rc: rc}, nil
}

// Close stops listening and removes the socket.
func (l *BessListener) Close() error { return l.l.Close() }

// Addr is the socket path.
func (l *BessListener) Addr() string { return l.path }
