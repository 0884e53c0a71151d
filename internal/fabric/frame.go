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
	buf  []byte
	N    int
	refs atomic.Int32
	big  bool
	home *Allocator // nil: the global pools
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
// pays for stealing between processors on every frame, while here the
// writers return whole batches under one lock and the reader takes them
// all back at once when its own stock runs out.
type Allocator struct {
	local []*Frame // the reader's stock; only it touches this
	mu    sync.Mutex
	back  []*Frame // returned frames
}

// allocKeep bounds the frames an allocator keeps; beyond, they go to the
// global pool (and the garbage collector).
const allocKeep = 1024

// NewAllocator returns an allocator for one reading goroutine.
func NewAllocator() *Allocator {
	return &Allocator{local: make([]*Frame, 0, allocKeep), back: make([]*Frame, 0, allocKeep)}
}

// Frame returns a frame with room for n bytes and one reference. Only the
// allocator's owner calls it.
func (a *Allocator) Frame(n int) *Frame {
	if n > smallSize {
		return NewFrame(n)
	}
	if len(a.local) == 0 {
		a.mu.Lock()
		a.local, a.back = a.back, a.local
		a.mu.Unlock()
	}
	var f *Frame
	if k := len(a.local); k > 0 {
		f = a.local[k-1]
		a.local[k-1] = nil
		a.local = a.local[:k-1]
	} else {
		// Frames beyond allocKeep went to the global pool: take them
		// back from there before making new ones.
		f = smallPool.Get().(*Frame)
		f.home = a
	}
	f.N = n
	f.refs.Store(1)
	return f
}

func (a *Allocator) put(f *Frame) {
	a.mu.Lock()
	if len(a.back) < allocKeep {
		a.back = append(a.back, f)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	f.home = nil
	smallPool.Put(f)
}

func (a *Allocator) putAll(fs []*Frame) {
	a.mu.Lock()
	for i, f := range fs {
		if len(a.back) >= allocKeep {
			a.mu.Unlock()
			for _, g := range fs[i:] {
				g.home = nil
				smallPool.Put(g)
			}
			return
		}
		a.back = append(a.back, f)
	}
	a.mu.Unlock()
}

// releaser drops references of many frames, returning the recycled ones
// to their allocators a run at a time.
type releaser struct {
	run  []*Frame
	home *Allocator
}

func (r *releaser) release(f *Frame) {
	if f.refs.Load() != 1 && f.refs.Add(-1) != 0 {
		return
	}
	if f.home == nil {
		f.recycle()
		return
	}
	if f.home != r.home {
		r.flush()
		r.home = f.home
	}
	r.run = append(r.run, f)
}

func (r *releaser) flush() {
	if len(r.run) > 0 {
		r.home.putAll(r.run)
		clear(r.run)
		r.run = r.run[:0]
	}
	r.home = nil
}
