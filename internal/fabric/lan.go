package fabric

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Lan is a name and the ports on it, with its own MAC table.
type Lan struct {
	name     string
	explicit bool // added by `add lan`: stays while empty
	// members is an immutable snapshot, replaced under the fabric mutex.
	members atomic.Pointer[[]*member]
	// gone holds the counters of members that left, so a lan's totals
	// never go backwards.
	gone Counters

	mu  sync.Mutex // serialises MAC table writes; reads are lock-free
	tab atomic.Pointer[macTable]
}

// macTable is made on the first frame a lan learns from, so idle lans
// cost nothing.
type macTable [macSlots]atomic.Pointer[macEntry]

// member is one port's place on one lan. The port's reader owns its
// counters, so per-lan counting never bounces a shared cache line
// between the readers of different ports.
type member struct {
	port *Port
	lan  *Lan
	c    counters
}

// The MAC table is a fixed open-addressed array of immutable entries:
// the forwarding path reads it with atomic loads only and writes nothing
// for a MAC it already knows (beyond a once-a-second timestamp). A full
// probe window evicts its oldest entry, so a flood of random source MACs
// costs bounded memory; unknown destinations are flooded, which is safe.
const (
	macBits  = 12
	macSlots = 1 << macBits
	macProbe = 8
)

type macEntry struct {
	key  uint64
	port *Port
	seen atomic.Int64
}

func newLan(name string, explicit bool) *Lan {
	l := &Lan{name: name, explicit: explicit}
	l.members.Store(&[]*member{})
	return l
}

// Name is the lan's name.
func (l *Lan) Name() string { return l.name }

// macKey is the 6 bytes at b as a number; b holds at least 8 bytes (one
// load instead of six).
func macKey(b []byte) uint64 { return binary.BigEndian.Uint64(b) >> 16 }

func macSlot(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> (64 - macBits) }

func (l *Lan) find(key uint64) *macEntry {
	t := l.tab.Load()
	if t == nil {
		return nil
	}
	s := macSlot(key)
	for i := uint64(0); i < macProbe; i++ {
		if e := t[(s+i)&(macSlots-1)].Load(); e != nil && e.key == key {
			return e
		}
	}
	return nil
}

// learn records that src lives behind p.
func (l *Lan) learn(src uint64, p *Port, now int64) {
	if e := l.find(src); e != nil && e.port == p {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		return
	}
	n := &macEntry{key: src, port: p}
	n.seen.Store(now)
	l.mu.Lock()
	t := l.tab.Load()
	if t == nil {
		t = new(macTable)
		l.tab.Store(t)
	}
	s := macSlot(src)
	victim, oldest := -1, int64(1<<62)
	for i := uint64(0); i < macProbe; i++ {
		j := int((s + i) & (macSlots - 1))
		e := t[j].Load()
		if e == nil || e.key == src {
			victim = j
			break
		}
		if t := e.seen.Load(); t < oldest {
			victim, oldest = j, t
		}
	}
	t[victim].Store(n)
	l.mu.Unlock()
}

// lookup returns the port a unicast MAC was learnt on, or nil.
func (l *Lan) lookup(dst uint64) *Port {
	if e := l.find(dst); e != nil {
		return e.port
	}
	return nil
}

// forget drops the MACs learnt on p (p left the lan).
func (l *Lan) forget(p *Port) {
	l.mu.Lock()
	if t := l.tab.Load(); t != nil {
		for i := range t {
			if e := t[i].Load(); e != nil && e.port == p {
				t[i].Store(nil)
			}
		}
	}
	l.mu.Unlock()
}

// age drops MACs not seen since before.
func (l *Lan) age(before int64) {
	l.mu.Lock()
	if t := l.tab.Load(); t != nil {
		for i := range t {
			if e := t[i].Load(); e != nil && e.seen.Load() < before {
				t[i].Store(nil)
			}
		}
	}
	l.mu.Unlock()
}

// counters sums what the lan's members counted, present and past.
// Called under the fabric mutex.
func (l *Lan) countersLocked() Counters {
	c := l.gone
	for _, m := range *l.members.Load() {
		c = c.Add(m.c.snap())
	}
	return c
}

func isMember(ms []*member, q *Port) bool {
	for _, m := range ms {
		if m.port == q {
			return true
		}
	}
	return false
}

func addOnce(dst []*Port, q *Port) ([]*Port, bool) {
	for _, x := range dst {
		if x == q {
			return dst, false
		}
	}
	return append(dst, q), true
}
