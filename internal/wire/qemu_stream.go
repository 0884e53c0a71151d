package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"cloonix/internal/fabric"
)

// QEMU's `-netdev stream` (and the older `-netdev socket`) sends each frame
// after a 4-byte big-endian length. The same framing serves tux helpers
// and t2t. Reads and writes are buffered: a burst of small frames costs
// one system call each way, and Flush runs when the port's queue is empty.

const streamBuf = 256 << 10

// StreamConn frames a byte stream.
type StreamConn struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	hdr [4]byte
	whd [4]byte
}

// NewStreamConn wraps a connected stream socket.
func NewStreamConn(c net.Conn) *StreamConn {
	return &StreamConn{c: c, r: bufio.NewReaderSize(c, streamBuf), w: bufio.NewWriterSize(c, streamBuf)}
}

// ReadFrame reads one length-prefixed frame. A length over 65535 means
// the stream is out of step and cannot be resynchronised: the error ends
// this connection only. A length under 14 is skipped (fabric.ErrSkip).
func (s *StreamConn) ReadFrame() (*fabric.Frame, error) {
	if _, err := io.ReadFull(s.r, s.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(s.hdr[:])
	if n > fabric.MaxFrame {
		// Nothing this long is a frame: the peer is out of step.
		return nil, fmt.Errorf("%w: peer sent length %d", ErrFrameSize, n)
	}
	if n < fabric.MinFrame {
		// Too short for an Ethernet header but still in step: skip it.
		if _, err := s.r.Discard(int(n)); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w: length %d", fabric.ErrSkip, ErrFrameSize, n)
	}
	f := fabric.NewFrame(int(n))
	if _, err := io.ReadFull(s.r, f.Bytes()); err != nil {
		f.Release()
		return nil, err
	}
	return f, nil
}

// WriteFrame buffers one frame with its length.
func (s *StreamConn) WriteFrame(b []byte) error {
	binary.BigEndian.PutUint32(s.whd[:], uint32(len(b)))
	if _, err := s.w.Write(s.whd[:]); err != nil {
		return err
	}
	_, err := s.w.Write(b)
	return err
}

// Flush sends what is buffered.
func (s *StreamConn) Flush() error { return s.w.Flush() }

// Close closes the socket.
func (s *StreamConn) Close() error { return s.c.Close() }

// StreamListener accepts stream peers on a unix or TCP socket.
type StreamListener struct {
	l    net.Listener
	addr string
}

// ListenStream listens on a unix socket path.
func ListenStream(path string) (*StreamListener, error) {
	l, err := unixListen("unix", path)
	if err != nil {
		return nil, err
	}
	return &StreamListener{l: l, addr: path}, nil
}

// ListenStreamTCP listens on a TCP address (HOST:PORT; port 0 picks one).
func ListenStreamTCP(addr string) (*StreamListener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &StreamListener{l: l, addr: "tcp:" + l.Addr().String()}, nil
}

// Accept waits for the next peer.
func (s *StreamListener) Accept() (fabric.Conn, error) {
	c, err := s.l.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return NewStreamConn(c), nil
}

// Close stops listening and removes the socket.
func (s *StreamListener) Close() error { return s.l.Close() }

// Addr is the socket path, or tcp:HOST:PORT.
func (s *StreamListener) Addr() string { return s.addr }
