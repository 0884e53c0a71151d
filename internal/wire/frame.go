package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// The stream framing: QEMU's -netdev stream (and every tux helper's
// socket to its switch port) sends each frame after a 4-byte big-endian
// length. This file is the one place that framing is written; the
// transports (QEMU stream, the offload conn, the tux helpers) build their
// batching on it. Its shape follows gvisor-tap-vsock pkg/tap/protocols.go:
// the header is one small thing that puts and reads a length.

// HeaderLen is the size of the length before each frame.
const HeaderLen = 4

// MaxStreamFrame is the largest length the stream framing carries
// (a TCP super frame, see package tux gso.go).
const MaxStreamFrame = 65535

// PutHeader writes the header of an n-byte frame into h[:HeaderLen].
func PutHeader(h []byte, n int) { binary.BigEndian.PutUint32(h, uint32(n)) }

// AppendHeader appends the header of an n-byte frame to b.
func AppendHeader(b []byte, n int) []byte { return binary.BigEndian.AppendUint32(b, uint32(n)) }

// FrameLen reads the length in the header h[:HeaderLen].
func FrameLen(h []byte) int { return int(binary.BigEndian.Uint32(h)) }

// WriteFrame sends one frame with its header in a single writev (or
// Write, when w is no socket).
func WriteFrame(w io.Writer, b []byte) error {
	var h [HeaderLen]byte
	PutHeader(h[:], len(b))
	bufs := net.Buffers{h[:], b}
	_, err := bufs.WriteTo(w)
	return err
}

// BufferFrame copies one frame with its header into w, flushed by the
// caller once per batch. The header goes through w's own buffer, so
// that nothing is allocated per frame.
func BufferFrame(w *bufio.Writer, b []byte) error {
	if _, err := w.Write(AppendHeader(w.AvailableBuffer(), len(b))); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// FrameReader reads stream-framed frames into one large buffer and hands
// them out in place: one read system call brings as many frames as are
// waiting, and no frame is copied before it goes on. A frame handed out
// stays valid until the next call that may read (Next, Fill, Take,
// Refill).
type FrameReader struct {
	c        io.Reader
	buf      []byte
	r, w     int
	min, max int
}

// FrameReaderSize is the default buffer: room for a burst of frames.
const FrameReaderSize = 1 << 20

// NewFrameReader reads from c; frames shorter than min or longer than
// max are an error that ends the stream (it cannot be resynchronised).
func NewFrameReader(c io.Reader, size, min, max int) *FrameReader {
	size = maxInt(size, 2*(HeaderLen+max))
	return &FrameReader{c: c, buf: make([]byte, size), min: min, max: max}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Fill reads until n bytes are buffered.
func (f *FrameReader) Fill(n int) error {
	if n > len(f.buf) {
		return fmt.Errorf("%w: %d bytes do not fit the reader", ErrFrameSize, n)
	}
	if f.r+n > len(f.buf) {
		// Not enough room after r: move the partial frame to the front.
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	for f.w-f.r < n {
		m, err := f.c.Read(f.buf[f.w:])
		f.w += m
		if err != nil && f.w-f.r < n {
			return err
		}
		if m == 0 && err == nil {
			return io.ErrNoProgress
		}
	}
	return nil
}

// Buffered is how many bytes wait in the buffer.
func (f *FrameReader) Buffered() int { return f.w - f.r }

// Header returns the next HeaderLen buffered bytes (after Fill).
func (f *FrameReader) Header() []byte { return f.buf[f.r : f.r+HeaderLen] }

// Next returns the next frame, reading as needed.
func (f *FrameReader) Next() ([]byte, error) {
	if err := f.Fill(HeaderLen); err != nil {
		return nil, err
	}
	n, err := f.check(FrameLen(f.Header()))
	if err != nil {
		return nil, err
	}
	return f.Take(n)
}

func (f *FrameReader) check(n int) (int, error) {
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%w: the peer sent a frame of %d bytes (want %d..%d)", ErrFrameSize, n, f.min, f.max)
	}
	return n, nil
}

// Take returns the n bytes after a HeaderLen header.
func (f *FrameReader) Take(n int) ([]byte, error) {
	if err := f.Fill(HeaderLen + n); err != nil {
		return nil, err
	}
	b := f.buf[f.r+HeaderLen : f.r+HeaderLen+n]
	f.r += HeaderLen + n
	if f.r == f.w {
		f.r, f.w = 0, 0
	}
	return b, nil
}

// TryNext returns the next frame if it is already whole
// in the buffer, without reading (ok false: call Refill). A bad length
// is an error.
func (f *FrameReader) TryNext() (b []byte, ok bool, err error) {
	if f.w-f.r < HeaderLen {
		return nil, false, nil
	}
	n, err := f.check(FrameLen(f.Header()))
	if err != nil {
		return nil, false, err
	}
	if f.w-f.r < HeaderLen+n {
		return nil, false, nil
	}
	b = f.buf[f.r+HeaderLen : f.r+HeaderLen+n]
	f.r += HeaderLen + n
	return b, true, nil
}

// Refill does one read (frames handed out before are no longer valid).
func (f *FrameReader) Refill() error {
	if f.r == f.w {
		f.r, f.w = 0, 0
	} else if len(f.buf)-f.r < HeaderLen+f.max+1 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	m, err := f.c.Read(f.buf[f.w:])
	f.w += m
	if m > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}
