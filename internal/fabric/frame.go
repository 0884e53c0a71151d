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
	// StdFrameRoom is the room of a small frame: every standard 1500-MTU
	// frame (and VLAN tags). A transport reading a standard frame into a
	// buffer of this size wastes no large one.
	StdFrameRoom = 2048
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
	slab  *Slab      // a view: buf lies in this reader's slab
}

var (
	smallPool = sync.Pool{New: func() any { return &Frame{buf: make([]byte, StdFrameRoom)} }}
	bigPool   = sync.Pool{New: func() any { return &Frame{buf: make([]byte, MaxFrame), big: true} }}
)

// NewFrame returns a frame with room for n bytes and one reference.
func NewFrame(n int) *Frame {
	var f *Frame
	if n <= StdFrameRoom {
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
	if s := f.slab; s != nil {
		f.slab, f.buf = nil, nil
		s.drop(1)
	}
	switch {
	case f.home != nil:
		f.home.put(f)
	case f.big:
		bigPool.Put(f)
	default:
		smallPool.Put(f)
	}
}

// Own returns a frame with a buffer of its own holding f's bytes,
// consuming one reference of f, when f is a view on a reader's slab;
// otherwise f itself. Whatever may hold a frame for long (an output
// queue past a few frames, impairments, captures) must not pin a slab.
func (f *Frame) Own() *Frame {
	if f.slab == nil {
		return f
	}
	c := NewFrame(f.N)
	copy(c.buf, f.Bytes())
	f.Release()
	return c
}

// Shrink moves a frame read into a big buffer into a small one when it
// fits, so queued frames do not pin 64 KiB each. It returns the frame to
// use; the big buffer goes back to its pool.
func (f *Frame) Shrink() *Frame {
	if !f.big || f.N > StdFrameRoom {
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
	local [3]*Frame // the reader's lists; only it touches these
	back  [3]atomic.Pointer[Frame]
	slabs *Slab // free slabs, the reader's
	sback atomic.Pointer[Slab]
}

// Classes: tiny and small buffers, and view headers (no buffer of their
// own: their bytes lie in a slab).
const (
	classTiny  = 0
	classSmall = 1
	classView  = 2
)

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
	if n > StdFrameRoom {
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
	switch c {
	case classSmall:
		size, k = StdFrameRoom, smallGrp
	case classView:
		size, k = 0, 64
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

// A Slab is a reader's receive buffer that frames are cut from without a
// copy (Allocator.View): the transport reads a burst into it and each
// frame is a view on its bytes. The slab comes back to its allocator when
// the reader has retired it and every view is released. Its count starts
// at slabBias so that cutting a view costs the reader no atomic; Retire
// takes off what the reader did not hand out.
type Slab struct {
	data  []byte
	given int64 // views cut, the reader's
	home  *Allocator
	next  *Slab
	_     [64]byte // releasers write refs from other cores
	refs  atomic.Int64
}

const slabBias = 1 << 40

// SlabSize is the size of a slab: a 64 KiB frame and its length fit
// with room to spare, and a burst of small frames is read with few
// system calls (128 KiB cost the direct pair 10% at 64 bytes).
const SlabSize = 256 << 10

// Data is the slab's whole buffer.
func (s *Slab) Data() []byte { return s.data }

func (s *Slab) drop(n int64) {
	if s.refs.Add(-n) == 0 {
		a := s.home
		for {
			old := a.sback.Load()
			s.next = old
			if a.sback.CompareAndSwap(old, s) {
				return
			}
		}
	}
}

// Slab returns an empty slab for the allocator's reader.
func (a *Allocator) Slab() *Slab {
	s := a.slabs
	if s == nil {
		s = a.sback.Swap(nil)
		if s == nil {
			s = &Slab{data: make([]byte, SlabSize), home: a}
		}
	}
	a.slabs, s.next = s.next, nil
	s.given = 0
	s.refs.Store(slabBias)
	return s
}

// Retire tells that the reader cuts no more views from s; it returns to
// the allocator when the last of them is released.
func (a *Allocator) Retire(s *Slab) {
	s.drop(slabBias - s.given)
}

// Unused tells whether no view of s was handed out: the reader may then
// reuse it from the start.
func (s *Slab) Unused() bool { return s.given == 0 }

// View returns a frame of the n bytes at off in s, with one reference,
// sharing the slab's memory. Only the allocator's owner calls it.
func (a *Allocator) View(s *Slab, off, n int) *Frame {
	f := a.local[classView]
	if f == nil {
		f = a.back[classView].Swap(nil)
		if f == nil {
			f = a.grow(classView)
		}
	}
	a.local[classView], f.next = f.next, nil
	f.buf = s.data[off : off+n : off+n]
	f.N = n
	f.slab = s
	s.given++
	if f.refs.Load() != 1 {
		f.refs.Store(1)
	}
	return f
}

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
	slab  *Slab // views of one slab in a row drop it with one atomic
	slabN int64
}

func (r *releaser) release(f *Frame) {
	if f.refs.Load() != 1 && f.refs.Add(-1) != 0 {
		return
	}
	if s := f.slab; s != nil {
		if s != r.slab {
			r.flushSlab()
			r.slab = s
		}
		r.slabN++
		f.slab, f.buf = nil, nil
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

func (r *releaser) flushSlab() {
	if r.slab != nil {
		r.slab.drop(r.slabN)
		r.slab, r.slabN = nil, 0
	}
}

func (r *releaser) flush() {
	r.flushSlab()
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
