package fabric

import (
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"cloonix/internal/netem"
)

// An impairer applies one direction's netem.Spec to a port's frames.
// Decisions (down, loss, duplication, corruption) are taken on the spot
// from a seeded random source. Delay, jitter and rate give each frame a
// departure time when it arrives: frames wait in one FIFO ring ordered by
// that time, and a single goroutine per impaired direction sleeps until
// the head is due and releases every frame that is. So a delayed frame
// costs a slot in a ring, never a goroutine or a timer of its own.
//
// Departure times never go backwards: jitter varies the delay but never
// reorders frames, as on a real link. Rate is a token bucket one frame
// deep: a frame leaves no earlier than the previous one's departure plus
// its own serialisation time at the rate (the link is busy sending it).
type impairer struct {
	spec   netem.Spec
	out    func(*Frame)       // where a frame goes when released on the spot
	outAll func([]*Frame) int // where frames falling due together go; returns how many it took
	drop   func()             // counts a frame lost at the port

	mu      sync.Mutex
	rng     *rand.Rand
	ring    []slot
	head, n int
	last    int64 // latest ready time queued, so jitter never reorders
	tat     int64 // when the link is free again (token bucket)
	stopped bool

	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	stats impairCounters
}

type slot struct {
	f   *Frame
	due int64
}

type impairCounters struct {
	lost, dups, corrupted, overflow, down atomic.Uint64
}

// ImpairStats counts what a port's impairments did, both directions summed.
type ImpairStats struct {
	Lost, Duplicated, Corrupted, Overflow, Down uint64
}

// epoch anchors mono; time.Since uses the monotonic clock.
var epoch = time.Now()

func mono() int64 { return int64(time.Since(epoch)) }

func newImpairer(spec netem.Spec, salt string, out func(*Frame), outAll func([]*Frame) int, drop func()) *impairer {
	var seed1, seed2 uint64
	if spec.HasSeed {
		// Each port and direction gets its own stream from one seed,
		// so a lan-wide impairment with --seed is repeatable yet the
		// ports do not lose the same frames.
		h := fnv.New64a()
		h.Write([]byte(salt))
		seed1, seed2 = spec.Seed, h.Sum64()
	} else {
		seed1, seed2 = rand.Uint64(), rand.Uint64()
	}
	im := &impairer{spec: spec, out: out, outAll: outAll, drop: drop, rng: rand.New(rand.NewPCG(seed1, seed2)),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if spec.Queued() {
		im.ring = make([]slot, 64)
		go im.run()
	} else {
		close(im.done)
	}
	return im
}

func (im *impairer) chance(pct float64) bool {
	return pct > 0 && (pct >= 100 || im.rng.Float64()*100 < pct)
}

// push takes ownership of one reference of f.
func (im *impairer) push(f *Frame) {
	s := &im.spec
	if s.Down {
		im.stats.down.Add(1)
		im.drop()
		f.Release()
		return
	}
	im.mu.Lock()
	if im.stopped {
		// A hook that loaded the old settings just before a change:
		// pass the frame on rather than strand it.
		im.mu.Unlock()
		im.out(f)
		return
	}
	if im.chance(s.Loss) {
		im.mu.Unlock()
		im.stats.lost.Add(1)
		im.drop()
		f.Release()
		return
	}
	copies := 1
	if im.chance(s.Dup) {
		copies = 2
		im.stats.dups.Add(1)
	}
	if im.chance(s.Corrupt) {
		f = im.corrupt(f)
		im.stats.corrupted.Add(1)
	}
	if copies == 2 {
		f.Ref(1)
	}
	if !s.Queued() {
		im.mu.Unlock()
		for i := 0; i < copies; i++ {
			im.out(f)
		}
		return
	}
	wasEmpty := im.n == 0
	for i := 0; i < copies; i++ {
		if !im.enqueueLocked(f) {
			im.stats.overflow.Add(1)
			im.drop()
			f.Release()
		}
	}
	im.mu.Unlock()
	if wasEmpty {
		select {
		case im.wake <- struct{}{}:
		default:
		}
	}
}

// corrupt flips one random bit in a private copy of f (other ports may
// share f). The bit is taken after the Ethernet header when there is a
// payload, so the frame still reaches the port it was meant for and the
// damage shows where checksums catch it, as with netem on a host.
func (im *impairer) corrupt(f *Frame) *Frame {
	c := NewFrame(f.N)
	copy(c.Buf()[:f.N], f.Bytes())
	f.Release()
	b := c.Bytes()
	pos := 0
	if len(b) > 14 {
		pos = 14 + im.rng.IntN(len(b)-14)
	} else {
		pos = im.rng.IntN(len(b))
	}
	b[pos] ^= 1 << im.rng.IntN(8)
	return c
}

// enqueueLocked gives f its departure time and queues it; false when the
// queue is at its limit.
func (im *impairer) enqueueLocked(f *Frame) bool {
	s := &im.spec
	if im.n >= s.QueueLimit() {
		return false
	}
	now := mono()
	d := int64(s.Delay)
	if j := int64(s.Jitter); j > 0 {
		d += im.rng.Int64N(2*j+1) - j
		if d < 0 {
			d = 0
		}
	}
	due := now + d
	if due < im.last {
		due = im.last
	}
	im.last = due
	if s.Rate > 0 {
		if due < im.tat {
			due = im.tat
		}
		im.tat = due + int64(uint64(f.N)*8*uint64(time.Second)/s.Rate)
	}
	if im.n == len(im.ring) {
		im.grow()
	}
	im.ring[(im.head+im.n)%len(im.ring)] = slot{f: f, due: due}
	im.n++
	return true
}

func (im *impairer) grow() {
	r := make([]slot, 2*len(im.ring))
	for i := 0; i < im.n; i++ {
		r[i] = im.ring[(im.head+i)%len(im.ring)]
	}
	im.ring, im.head = r, 0
}

// run releases frames as they fall due. A due frame leaves the ring only
// once its exit took it: an egress exit takes no more than the port's
// queue has room for, so a burst (timers fire about once a millisecond)
// waits here, within the impairment's limit, rather than overflowing the
// port's queue.
func (im *impairer) run() {
	defer close(im.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	sleep := func(d time.Duration) bool {
		t.Reset(d)
		select {
		case <-t.C:
		case <-im.wake:
			t.Stop()
		case <-im.quit:
			t.Stop()
			return false
		}
		return true
	}
	var batch []*Frame
	backoff := retryFull
	for {
		im.mu.Lock()
		if im.n == 0 {
			im.mu.Unlock()
			select {
			case <-im.wake:
				continue
			case <-im.quit:
				return
			}
		}
		now := mono()
		if wait := im.ring[im.head].due - now; wait > 0 {
			im.mu.Unlock()
			if !sleep(time.Duration(wait)) {
				return
			}
			continue
		}
		// Only run removes from the head and push only appends, so the
		// due frames stay where they are while the lock is released.
		for i := 0; i < im.n && len(batch) < maxRelease; i++ {
			s := im.ring[(im.head+i)%len(im.ring)]
			if s.due > now {
				break
			}
			batch = append(batch, s.f)
		}
		im.mu.Unlock()
		took := im.outAll(batch)
		im.mu.Lock()
		for i := 0; i < took; i++ {
			im.ring[im.head] = slot{}
			im.head = (im.head + 1) % len(im.ring)
			im.n--
		}
		im.mu.Unlock()
		full := took < len(batch)
		clear(batch)
		batch = batch[:0]
		if !full {
			backoff = retryFull
			continue
		}
		// A stuck peer costs a wakeup now and then, not a busy loop.
		if took > 0 {
			backoff = retryFull
		} else if backoff *= 2; backoff > 10*time.Millisecond {
			backoff = 10 * time.Millisecond
		}
		if !sleep(backoff) {
			return
		}
	}
}

// maxRelease bounds the frames released at once; retryFull is how long a
// frame that found its port's queue full waits before trying again.
const (
	maxRelease = 256
	retryFull  = 100 * time.Microsecond
)

// stop ends the impairer. With flush, frames still waiting go out at
// once (settings changed: nothing is lost); without, they are freed (the
// port is gone).
func (im *impairer) stop(flush bool) {
	im.mu.Lock()
	if im.stopped {
		im.mu.Unlock()
		return
	}
	im.stopped = true
	im.mu.Unlock()
	if im.spec.Queued() {
		close(im.quit)
		<-im.done
	}
	im.mu.Lock()
	var left []*Frame
	for im.n > 0 {
		left = append(left, im.ring[im.head].f)
		im.ring[im.head] = slot{}
		im.head = (im.head + 1) % len(im.ring)
		im.n--
	}
	im.mu.Unlock()
	if flush {
		// What the exit cannot take now is lost (counted): settings
		// changed in the middle of a burst.
		took := 0
		if len(left) > 0 {
			took = im.outAll(left)
		}
		for _, f := range left[took:] {
			im.drop()
			f.Release()
		}
		return
	}
	for _, f := range left {
		f.Release()
	}
}

func (im *impairer) addStats(s *ImpairStats) {
	if im == nil {
		return
	}
	s.Lost += im.stats.lost.Load()
	s.Duplicated += im.stats.dups.Load()
	s.Corrupted += im.stats.corrupted.Load()
	s.Overflow += im.stats.overflow.Load()
	s.Down += im.stats.down.Load()
}
