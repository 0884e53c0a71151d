package fabric

import (
	"sync"
	"sync/atomic"
)

// Frame sizes the switch accepts: an Ethernet header at least, and at
// most what the 4-byte-length transports and IP's 16-bit length carry.
const (
	MinFrame = 14
	MaxFrame = 65535
	// smallSize covers every standard 1500-MTU frame (and VLAN tags).
	smallSize = 2048
)

// Frame is one Ethernet frame in a pooled buffer. A frame delivered to
// several ports is shared, not copied: each delivery holds a reference and
// the last Release returns the buffer to its pool.
type Frame struct {
	buf  []byte
	N    int
	refs atomic.Int32
	big  bool
}

var (
	smallPool = sync.Pool{New: func() any { return &Frame{buf: make([]byte, smallSize)} }}
	bigPool   = sync.Pool{New: func() any { return &Frame{buf: make([]byte, MaxFrame), big: true} }}
)

// NewFrame returns a frame with room for n bytes and one reference.
func NewFrame(n int) *Frame {
	var f *Frame
	if n <= smallSize {
		f = smallPool.Get().(*Frame)
	} else {
		f = bigPool.Get().(*Frame)
	}
	f.N = n
	f.refs.Store(1)
	return f
}

// Bytes is the frame's content.
func (f *Frame) Bytes() []byte { return f.buf[:f.N] }

// Buf is the whole buffer, for transports that read into it.
func (f *Frame) Buf() []byte { return f.buf }

// Ref adds n references.
func (f *Frame) Ref(n int32) { f.refs.Add(n) }

// Release drops one reference; the last one recycles the buffer.
func (f *Frame) Release() {
	if f.refs.Add(-1) != 0 {
		return
	}
	if f.big {
		bigPool.Put(f)
	} else {
		smallPool.Put(f)
	}
}

// Shrink moves a frame read into a big buffer into a small one when it
// fits, so queued frames do not pin 64 KiB each. It returns the frame to
// use; the big buffer goes back to its pool.
func (f *Frame) Shrink() *Frame {
	if !f.big || f.N > smallSize {
		return f
	}
	s := NewFrame(f.N)
	copy(s.buf, f.buf[:f.N])
	f.Release()
	return s
}
