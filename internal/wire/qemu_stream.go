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
// and t2t. Reads are buffered: a burst of small frames costs one system
// call, and the port batches its forwarding while frames remain buffered
// (Buffered). Writes gather headers and small frames in one buffer and
// point at large frames where they are, then Flush sends it all with one
// writev, so a 1500-byte frame is never copied in user space on its way out.

const (
	streamBuf = 256 << 10
	// Frames from this size up are written from their own buffer.
	gatherMin = 512
	// Flush early past this many pieces (the kernel takes 1024 per writev).
	maxPieces = 1000
	// Frames up to this size take the buffered fast path of ReadFrame.
	smallFrame = 2048
)

// StreamConn frames a byte stream.
type StreamConn struct {
	c     net.Conn
	r     *bufio.Reader
	alloc *fabric.Allocator
	hdr   [4]byte

	wbuf []byte      // headers and small frames, never reallocated
	mark int         // start of wbuf not yet in iov
	iov  net.Buffers // pieces to write: slices of wbuf and large frames
	out  net.Buffers // what WriteTo consumes (it advances the slice)
}

// NewStreamConn wraps a connected stream socket.
func NewStreamConn(c net.Conn) *StreamConn {
	return &StreamConn{c: c, r: bufio.NewReaderSize(c, streamBuf), alloc: fabric.NewAllocator(),
		wbuf: make([]byte, 0, streamBuf), iov: make(net.Buffers, 0, maxPieces+2)}
}

// ReadFrame reads one length-prefixed frame. A length over 65535 means
// the stream is out of step and cannot be resynchronised: the error ends
// this connection only. A length under 14 is skipped (fabric.ErrSkip).
func (s *StreamConn) ReadFrame() (*fabric.Frame, error) {
	// Fast path: the whole frame is already buffered (a burst).
	if b := s.r.Buffered(); b >= 4+fabric.MinFrame {
		h, _ := s.r.Peek(b)
		n := int(binary.BigEndian.Uint32(h))
		if n >= fabric.MinFrame && n <= smallFrame && 4+n <= b {
			f := s.alloc.Frame(n)
			copy(f.Bytes(), h[4:4+n])
			_, _ = s.r.Discard(4 + n)
			return f, nil
		}
	}
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
	f := s.alloc.Frame(int(n))
	if _, err := io.ReadFull(s.r, f.Bytes()); err != nil {
		f.Release()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f, nil
}

// Buffered is how many bytes are read and not yet returned as frames.
func (s *StreamConn) Buffered() int { return s.r.Buffered() }

// WriteFrame queues one frame with its length; b must stay unchanged
// until Flush (fabric.Conn).
func (s *StreamConn) WriteFrame(b []byte) error {
	need := 4
	if len(b) < gatherMin {
		need += len(b)
	}
	if len(s.wbuf)+need > cap(s.wbuf) || len(s.iov) >= maxPieces {
		if err := s.Flush(); err != nil {
			return err
		}
	}
	s.wbuf = binary.BigEndian.AppendUint32(s.wbuf, uint32(len(b)))
	if len(b) < gatherMin {
		s.wbuf = append(s.wbuf, b...)
		return nil
	}
	s.iov = append(s.iov, s.wbuf[s.mark:], b)
	s.mark = len(s.wbuf)
	return nil
}

// Flush sends what is queued, in one writev when it can.
func (s *StreamConn) Flush() error {
	if s.mark < len(s.wbuf) {
		s.iov = append(s.iov, s.wbuf[s.mark:])
	}
	var err error
	switch len(s.iov) {
	case 0:
	case 1:
		_, err = s.c.Write(s.iov[0])
	default:
		s.out = s.iov
		_, err = s.out.WriteTo(s.c)
	}
	clear(s.iov)
	s.iov = s.iov[:0]
	s.wbuf = s.wbuf[:0]
	s.mark = 0
	return err
}

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
