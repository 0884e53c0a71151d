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
	rx   bessRx   // the reader's
	tx   bessTx   // WriteNow's (the writing side's)
}

// ReadFrame returns the next packet of a valid size; a packet that is too
// short or was truncated is skipped. Packets come in batches of up to
// bessBatch per system call (recvmmsg): a UML guest sending a TCP stream
// hands over many 1500-byte packets at a time, and the port passes a
// batch on with one lock and one wakeup (Buffered).
func (b *BessConn) ReadFrame() (*fabric.Frame, error) {
	r := &b.rx
	for r.next >= len(r.got) {
		if r.eof {
			return nil, net.ErrClosed
		}
		if err := r.fill(b.rc); err != nil {
			return nil, err
		}
	}
	f := r.got[r.next]
	r.got[r.next] = nil
	r.next++
	return f, nil
}

// Buffered is how many frames the last batch still holds.
func (b *BessConn) Buffered() int { return len(b.rx.got) - b.rx.next }

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
	if len(b.kept) == 0 {
		var werr error
		err := b.rc.Write(func(fd uintptr) bool {
			i, werr = b.tx.send(fd, fs)
			return true // never wait here
		})
		if err != nil {
			return false, err
		}
		if werr != nil {
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
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	return &BessConn{c: c, rc: rc, rx: newBessRx()}, nil
}

// Close stops listening and removes the socket.
func (l *BessListener) Close() error { return l.l.Close() }

// Addr is the socket path.
func (l *BessListener) Addr() string { return l.path }
