package fabric

import (
	"sync"
	"sync/atomic"
)

// Lan is a name and the ports on it, with its own MAC table.
type Lan struct {
	name     string
	explicit bool // added by `add lan`: stays while empty
	members  atomic.Pointer[[]*Port]
	counters counters

	mu  sync.RWMutex
	mac map[uint64]*macEntry
}

type macEntry struct {
	port *Port
	seen atomic.Int64
}

func newLan(name string, explicit bool) *Lan {
	l := &Lan{name: name, explicit: explicit, mac: map[uint64]*macEntry{}}
	l.members.Store(&[]*Port{})
	return l
}

// Name is the lan's name.
func (l *Lan) Name() string { return l.name }

func macKey(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// learn records that src lives behind p. The common case (known, same
// port) takes only a read lock and one atomic store.
func (l *Lan) learn(src uint64, p *Port, now int64) {
	l.mu.RLock()
	e := l.mac[src]
	l.mu.RUnlock()
	if e != nil && e.port == p {
		if e.seen.Load() != now {
			e.seen.Store(now)
		}
		return
	}
	n := &macEntry{port: p}
	n.seen.Store(now)
	l.mu.Lock()
	l.mac[src] = n
	l.mu.Unlock()
}

// lookup returns the port a unicast MAC was learnt on, or nil.
func (l *Lan) lookup(dst uint64) *Port {
	l.mu.RLock()
	e := l.mac[dst]
	l.mu.RUnlock()
	if e == nil {
		return nil
	}
	return e.port
}

// forget drops the MACs learnt on p (p left the lan).
func (l *Lan) forget(p *Port) {
	l.mu.Lock()
	for k, e := range l.mac {
		if e.port == p {
			delete(l.mac, k)
		}
	}
	l.mu.Unlock()
}

// age drops MACs not seen since before.
func (l *Lan) age(before int64) {
	l.mu.Lock()
	for k, e := range l.mac {
		if e.seen.Load() < before {
			delete(l.mac, k)
		}
	}
	l.mu.Unlock()
}
