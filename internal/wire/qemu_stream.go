package wire

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"unsafe"

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
	// The send buffer the switch asks for on its unix stream sockets.
	sockBuf = 512 << 10
	// A read into a slab is at least this long; less room left, and the
	// next read goes into a fresh slab.
	minRead = 32 << 10
	// Frames up to this size are copied out of the slab into the
	// allocator's tiny buffers: cheaper than a view's bookkeeping, and
	// bursts of them stay compact.
	copyMax = 256
)

// StreamConn frames a byte stream.
type StreamConn struct {
	c     net.Conn
	alloc *fabric.Allocator
	slab  *fabric.Slab // being read into; frames are views on it
	rd    []byte       // slab's bytes: [rp, w) read and not yet framed
	rp, w int

	wbuf []byte      // headers and small frames, never reallocated
	mark int         // start of wbuf not yet in iov
	iov  net.Buffers // pieces to write: slices of wbuf and large frames
	out  net.Buffers // what WriteTo consumes (it advances the slice)

	// WriteNow: a non-blocking writev through the raw socket; what the
	// socket does not take waits in kept, sent first by Flush.
	rc     syscall.RawConn
	kept   []byte
	vec    []syscall.Iovec
	nowFn  func(fd uintptr) bool // s.writevNow, made once
	nowN   int
	nowErr syscall.Errno
}

// NewStreamConn wraps a connected stream socket.
func NewStreamConn(c net.Conn) *StreamConn {
	s := &StreamConn{c: c, alloc: fabric.NewAllocator(),
		wbuf: make([]byte, 0, streamBuf), iov: make(net.Buffers, 0, maxPieces+2)}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.vec = make([]syscall.Iovec, 0, maxPieces+2)
			s.nowFn = s.writevNow
		}
	}
	return s
}

// ReadFrame reads one length-prefixed frame. A length over 65535 means
// the stream is out of step and cannot be resynchronised: the error ends
// this connection only. A length under 14 is skipped (fabric.ErrSkip).
// Frames are views on the slab the socket was read into: no copy.
func (s *StreamConn) ReadFrame() (*fabric.Frame, error) {
	for {
		need := 4
		if avail := s.w - s.rp; avail >= 4 {
			n := FrameLen(s.rd[s.rp:])
			if n > fabric.MaxFrame {
				// Nothing this long is a frame: the peer is out of step.
				return nil, fmt.Errorf("%w: peer sent length %d", ErrFrameSize, n)
			}
			if avail >= 4+n {
				off := s.rp + 4
				s.rp += 4 + n
				if n < fabric.MinFrame {
					// Too short for an Ethernet header but still in step.
					return nil, fmt.Errorf("%w: %w: length %d", fabric.ErrSkip, ErrFrameSize, n)
				}
				if n <= copyMax {
					f := s.alloc.Frame(n)
					copy(f.Bytes(), s.rd[off:off+n])
					return f, nil
				}
				return s.alloc.View(s.slab, off, n), nil
			}
			need = 4 + n
		}
		if err := s.fill(need); err != nil {
			return nil, err
		}
	}
}

// fill reads at least once more from the socket, after making room for
// need bytes from the read position: what is left of a partial frame
// moves to a fresh slab when the current one lacks room (or a read of
// minRead).
func (s *StreamConn) fill(need int) error {
	if s.slab == nil || len(s.rd)-s.rp < need || len(s.rd)-s.w < minRead {
		left := s.w - s.rp
		if s.slab != nil && s.slab.Unused() {
			// Nothing handed out: slide back and keep the slab.
			copy(s.rd, s.rd[s.rp:s.w])
		} else {
			ns := s.alloc.Slab()
			if s.slab != nil {
				copy(ns.Data(), s.rd[s.rp:s.w])
				s.alloc.Retire(s.slab)
			}
			s.slab, s.rd = ns, ns.Data()
		}
		s.rp, s.w = 0, left
	}
	n, err := s.c.Read(s.rd[s.w:])
	s.w += n
	if err != nil {
		if n > 0 {
			return nil // frames first; the error comes back on the next read
		}
		if err == io.EOF && s.w > s.rp {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// Buffered is how many bytes are read and not yet returned as frames.
func (s *StreamConn) Buffered() int { return s.w - s.rp }

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
	s.wbuf = AppendHeader(s.wbuf, len(b))
	if len(b) < gatherMin {
		s.wbuf = append(s.wbuf, b...)
		return nil
	}
	s.iov = append(s.iov, s.wbuf[s.mark:], b)
	s.mark = len(s.wbuf)
	return nil
}

// Flush sends what is queued, in one writev when it can, after what an
// earlier WriteNow kept.
func (s *StreamConn) Flush() error {
	if len(s.kept) > 0 {
		_, err := s.c.Write(s.kept)
		if cap(s.kept) > 1<<20 {
			s.kept = nil // a jumbo burst: do not hold on to its memory
		} else {
			s.kept = s.kept[:0]
		}
		if err != nil {
			return err
		}
	}
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
	s.clearWrite()
	return err
}

// Close closes the socket.
func (s *StreamConn) Close() error { return s.c.Close() }

// WriteNow writes frames without blocking (fabric.TryWriter): headers and
// small frames gathered, large frames from where they are, in one writev
// on the non-blocking socket. What the socket does not take is copied
// into kept, in order, for the next Flush.
func (s *StreamConn) WriteNow(fs []*fabric.Frame) (bool, error) {
	if s.rc == nil || len(s.kept) > 0 || len(s.iov) > 0 || len(s.wbuf) > 0 {
		// Something already waits (or no raw socket): keep these behind it.
		for _, f := range fs {
			s.kept = AppendHeader(s.kept, f.N)
			s.kept = append(s.kept, f.Bytes()...)
		}
		return len(s.kept) > 0 || len(s.iov) > 0 || len(s.wbuf) > 0, nil
	}
	for i := 0; i < len(fs); {
		// One writev's worth: within the gather buffer and the iovec limit.
		j := i
		for ; j < len(fs) && len(s.vec) < maxPieces; j++ {
			b := fs[j].Bytes()
			need := 4
			if len(b) < gatherMin {
				need += len(b)
			}
			if len(s.wbuf)+need > cap(s.wbuf) {
				break
			}
			s.wbuf = AppendHeader(s.wbuf, len(b))
			if len(b) < gatherMin {
				s.wbuf = append(s.wbuf, b...)
				continue
			}
			s.iov = append(s.iov, s.wbuf[s.mark:], b)
			s.mark = len(s.wbuf)
		}
		if s.mark < len(s.wbuf) {
			s.iov = append(s.iov, s.wbuf[s.mark:])
		}
		err := s.sendNow()
		s.clearWrite()
		if err != nil {
			return false, err
		}
		if len(s.kept) > 0 {
			// The socket is full: the rest waits behind the kept bytes.
			for _, f := range fs[j:] {
				s.kept = AppendHeader(s.kept, f.N)
				s.kept = append(s.kept, f.Bytes()...)
			}
			return true, nil
		}
		i = j
	}
	return false, nil
}

// sendNow writes s.iov with one non-blocking writev and copies what was
// not written to s.kept.
func (s *StreamConn) sendNow() error {
	s.vec = s.vec[:0]
	for _, b := range s.iov {
		if len(b) > 0 {
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			s.vec = append(s.vec, v)
		}
	}
	if len(s.vec) == 0 {
		return nil
	}
	s.nowN, s.nowErr = 0, 0
	if err := s.rc.Write(s.nowFn); err != nil {
		return err
	}
	switch s.nowErr {
	case 0, syscall.EAGAIN, syscall.EINTR:
	default:
		return s.nowErr
	}
	n := s.nowN
	for _, b := range s.iov {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		s.kept = append(s.kept, b[n:]...)
		n = 0
	}
	return nil
}

// writevNow runs inside RawConn.Write; returning true means do not wait
// for the socket to become writable.
func (s *StreamConn) writevNow(fd uintptr) bool {
	r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.vec[0])), uintptr(len(s.vec)))
	if e != 0 {
		s.nowErr = e
		return true
	}
	s.nowN = int(r)
	return true
}

func (s *StreamConn) clearWrite() {
	clear(s.iov)
	s.iov = s.iov[:0]
	clear(s.vec)
	s.vec = s.vec[:0]
	s.wbuf = s.wbuf[:0]
	s.mark = 0
}

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
	if uc, ok := c.(*net.UnixConn); ok {
		// A unix stream socket queues at most its sender's send buffer
		// toward the peer: the default (208 KiB) fills within a burst
		// and the switch's writes stop on EAGAIN, handing frames to the
		// port's writer goroutine (a wakeup, and a copy of what the
		// socket did not take). A larger one lets inline writes through
		// (docs/benchmarks.md). The kernel doubles it, up to wmem_max.
		_ = uc.SetWriteBuffer(sockBuf)
	}
	return NewStreamConn(c), nil
}

// Close stops listening and removes the socket.
func (s *StreamListener) Close() error { return s.l.Close() }

// Addr is the socket path, or tcp:HOST:PORT.
func (s *StreamListener) Addr() string { return s.addr }
