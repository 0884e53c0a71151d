package fabric

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A Tap is one running capture. The forwarding path hands it a reference
// to each frame (no copy) into a bounded queue; when the reader falls
// behind, frames are dropped from the capture and counted, never pushed
// back on the traffic. The reader takes the whole queue at a time and is
// woken only when the queue was empty, so a busy capture costs a lock
// and an append per frame, not a goroutine switch.
type Tap struct {
	f      *Fabric
	name   string // the port or lan captured
	lan    bool
	port   *Port
	mu     sync.Mutex
	q      []Captured
	max    int
	ready  chan struct{} // room for one token: frames are waiting
	drops  atomic.Uint64
	done   chan struct{}
	once   sync.Once
	reason atomic.Pointer[string]
}

// Captured is one frame seen by a Tap. Iface is 0 for a lan capture; for
// a port capture 0 is a frame from the port's peer into the switch and 1
// a frame from the switch to the peer. The reader must Release it.
type Captured struct {
	Frame *Frame
	Time  int64 // unix nanoseconds
	Iface int
}

// Release gives back the capture's reference to the frame.
func (c Captured) Release() { c.Frame.Release() }

// TapQueue is a capture's default backlog in frames.
const TapQueue = 4096

func newTap(f *Fabric, name string, lan bool, queue int) *Tap {
	if queue <= 0 {
		queue = TapQueue
	}
	return &Tap{f: f, name: name, lan: lan, max: queue, q: make([]Captured, 0, min(queue, 1024)),
		ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// put hands one frame to every tap in ts.
func putAll(ts []*Tap, f *Frame, iface int) {
	now := time.Now().UnixNano()
	for _, t := range ts {
		t.mu.Lock()
		n := len(t.q)
		if n >= t.max {
			t.mu.Unlock()
			t.drops.Add(1)
			continue
		}
		f.Ref(1)
		t.q = append(t.q, Captured{Frame: f, Time: now, Iface: iface})
		t.mu.Unlock()
		if n == 0 {
			select {
			case t.ready <- struct{}{}:
			default:
			}
		}
	}
}

// CapturePort starts capturing a port's traffic both ways, as its peer
// sends and receives it (before ingress and after egress impairments).
// queue is the backlog in frames (0: TapQueue).
func (f *Fabric) CapturePort(port string, queue int) (*Tap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.ports[port]
	if !ok {
		return nil, fmt.Errorf("port %q %w", port, ErrNotFound)
	}
	t := newTap(f, port, false, queue)
	t.port = p
	e := f.extLocked(p)
	e.taps = append(append([]*Tap{}, e.taps...), t)
	f.hooksChanged(p)
	return t, nil
}

// CaptureLan starts capturing every frame that enters a lan, once each,
// as it enters (after the sender's ingress impairments). The capture
// follows the lan's name: ports attached later are captured too, and it
// lasts until Close even if the lan empties.
func (f *Fabric) CaptureLan(lan string, queue int) (*Tap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lans[lan]
	if !ok {
		return nil, fmt.Errorf("lan %q %w", lan, ErrNotFound)
	}
	f.ext.init()
	t := newTap(f, lan, true, queue)
	f.ext.lans[lan] = append(append([]*Tap{}, f.ext.lans[lan]...), t)
	for _, m := range *l.members.Load() {
		f.hooksChanged(m.port)
	}
	return t, nil
}

// Ready is signalled when frames are waiting to be taken.
func (t *Tap) Ready() <-chan struct{} { return t.ready }

// Take returns the frames waiting, in order, and keeps buf (emptied) as
// the queue's next storage: pass back the slice Take returned last, once
// its frames are released, and capturing allocates nothing.
func (t *Tap) Take(buf []Captured) []Captured {
	clear(buf)
	t.mu.Lock()
	got := t.q
	t.q = buf[:0]
	t.mu.Unlock()
	return got
}

// Done is closed when the capture ends: Close, or its port was deleted.
func (t *Tap) Done() <-chan struct{} { return t.done }

// Reason tells why the capture ended ("" while it runs or after Close).
func (t *Tap) Reason() string {
	if r := t.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// Dropped is how many frames the capture missed because its reader was
// behind.
func (t *Tap) Dropped() uint64 { return t.drops.Load() }

// Name is the port or lan captured; IsLan tells which.
func (t *Tap) Name() string { return t.name }

// IsLan tells whether the tap captures a lan (else a port).
func (t *Tap) IsLan() bool { return t.lan }

// Close stops the capture and frees the frames it still holds.
func (t *Tap) Close() {
	f := t.f
	f.mu.Lock()
	if t.lan {
		f.ext.lans[t.name] = without(f.ext.lans[t.name], t)
		if len(f.ext.lans[t.name]) == 0 {
			delete(f.ext.lans, t.name)
		}
		if l, ok := f.lans[t.name]; ok {
			for _, m := range *l.members.Load() {
				f.hooksChanged(m.port)
			}
		}
	} else if e := f.ext.ports[t.port]; e != nil {
		e.taps = without(e.taps, t)
		f.hooksChanged(t.port)
	}
	f.mu.Unlock()
	t.end("")
	for _, c := range t.Take(nil) {
		c.Release()
	}
}

func (t *Tap) end(reason string) {
	t.once.Do(func() {
		if reason != "" {
			t.reason.Store(&reason)
		}
		close(t.done)
	})
}

func without(ts []*Tap, t *Tap) []*Tap {
	n := make([]*Tap, 0, len(ts))
	for _, x := range ts {
		if x != t {
			n = append(n, x)
		}
	}
	return n
}
