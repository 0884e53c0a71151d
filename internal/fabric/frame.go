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
// the last Release returns the buffer to where it came from.
type Frame struct {
	buf   []byte
	N     int
	refs  atomic.Int32
	big   bool
	home  *Allocator // nil: the global pools
	next  *Frame     // in its allocator's free lists
	class uint8      // its allocator's size class
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
	// The holder of the only reference needs no atomic decrement: no
	// one else can change the count (a frame delivered to one port is
	// the common case).
	if f.refs.Load() == 1 || f.refs.Add(-1) == 0 {
		f.recycle()
	}
}

func (f *Frame) recycle() {
	switch {
	case f.home != nil:
		f.home.put(f)
	case f.big:
		bigPool.Put(f)
	default:
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

// Allocator hands out small frames to one reading goroutine and takes
// them back from whichever goroutine releases them last. Frames travel
// from a port's reader to other ports' writers; a global sync.Pool then
// pays for stealing between processors on every frame. Here releasers
// push onto a lock-free stack (one compare-and-swap per frame, or per run
// of frames) and the reader takes the whole stack at once when its own
// list runs out; taking all at once is what keeps the stack free of ABA.
// An allocator keeps what it made: at most the peak of its frames in
// flight, freed with it when its connection goes.
//
// Two classes, each made in contiguous groups: tiny buffers for small
// frames (ACKs, ARP, 64-byte tests) so that a burst of them touches few
// cache lines and pages, and 2 KiB buffers for up to a 1500-MTU frame.
type Allocator struct {
	local [2]*Frame // the reader's lists; only it touches these
	back  [2]atomic.Pointer[Frame]
}

const (
	tinySize  = 256
	tinyGroup = 64 // frames made at once: 16 KiB
	smallGrp  = 16 // 32 KiB
)

// NewAllocator returns an allocator for one reading goroutine.
func NewAllocator() *Allocator { return &Allocator{} }

// Frame returns a frame with room for n bytes and one reference. Only the
// allocator's owner calls it.
func (a *Allocator) Frame(n int) *Frame {
	if n > smallSize {
		return NewFrame(n)
	}
	c := uint8(1)
	if n <= tinySize {
		c = 0
	}
	f := a.local[c]
	if f == nil {
		f = a.back[c].Swap(nil)
		if f == nil {
			f = a.grow(c)
		}
	}
	a.local[c], f.next = f.next, nil
	f.N = n
	if f.refs.Load() != 1 {
		f.refs.Store(1)
	}
	return f
}

// grow makes a group of frames of class c, chained.
func (a *Allocator) grow(c uint8) *Frame {
	size, k := tinySize, tinyGroup
	if c == 1 {
		size, k = smallSize, smallGrp
	}
	mem := make([]byte, size*k)
	fs := make([]Frame, k)
	for i := range fs {
		fs[i].buf = mem[i*size : (i+1)*size : (i+1)*size]
		fs[i].home, fs[i].class = a, c
		fs[i].refs.Store(1)
		if i+1 < k {
			fs[i].next = &fs[i+1]
		}
	}
	return &fs[0]
}

func (a *Allocator) put(f *Frame) { a.putChain(f, f) }

// putChain pushes the chain first..last (linked by next, one class).
func (a *Allocator) putChain(first, last *Frame) {
	st := &a.back[first.class]
	for {
		old := st.Load()
		last.next = old
		if st.CompareAndSwap(old, first) {
			return
		}
	}
}

// releaser drops references of many frames, returning the recycled ones
// to their allocators a run at a time.
type releaser struct {
	run   []*Frame
	home  *Allocator
	class uint8
}

func (r *releaser) release(f *Frame) {
	if f.refs.Load() != 1 && f.refs.Add(-1) != 0 {
		return
	}
	if f.home == nil {
		f.recycle()
		return
	}
	if f.home != r.home || f.class != r.class {
		r.flush()
		r.home, r.class = f.home, f.class
	}
	r.run = append(r.run, f)
}

func (r *releaser) flush() {
	if len(r.run) > 0 {
		for i := 0; i+1 < len(r.run); i++ {
			r.run[i].next = r.run[i+1]
		}
		r.home.putChain(r.run[0], r.run[len(r.run)-1])
		clear(r.run)
		r.run = r.run[:0]
	}
	r.home = nil
}
