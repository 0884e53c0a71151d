// Package fabric is the switch core (DESIGN section 2): ports, lans and
// forwarding. A lan is a name; every port on a lan sees every other; a
// port may sit on any number of lans and a frame goes once to each port
// it reaches. Each lan learns MACs so unicast does not reach bystanders.
//
// The hot path takes no fabric lock: each port reads an immutable
// snapshot of its lans and each lan one of its members (copy on write
// under the fabric mutex), and MAC tables are read with atomic loads. A
// port's reader batches the frames its socket already holds; a frame for
// an idle peer is written at once from that reader without blocking
// (TryWriter), anything else goes to the destination's bounded queue,
// drained by its own writer goroutine, so one slow peer only drops its
// own frames and never holds up a sender (docs/benchmarks.md).
package fabric

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// QueueLen is a port's output queue length in frames.
const QueueLen = 1024

// Fabric holds the ports and lans of one switch.
type Fabric struct {
	mu    sync.Mutex
	ports map[string]*Port
	lans  map[string]*Lan
	now   atomic.Int64 // coarse clock (unix seconds) for MAC aging
	stop  chan struct{}

	// OnConn, if set, is called when a port's peer connects or leaves.
	OnConn func(port string, up bool)
	// OnLan, if set, is called when a lan appears or disappears (VDE
	// directories follow lans). It runs under the fabric's lock: it must
	// not call the fabric.
	OnLan func(lan string, up bool)
	// OnMember, if set, is called when a port joins or leaves a lan
	// (attach, detach, and the detaches of a port or lan deleted), before
	// OnLan reports the lan gone. It runs under the fabric's lock too.
	OnMember func(port, lan string, on bool)

	ext extState // impairments and captures (ext.go), under mu
}

// New returns an empty fabric with its MAC aging running.
func New() *Fabric {
	f := &Fabric{ports: map[string]*Port{}, lans: map[string]*Lan{}, stop: make(chan struct{})}
	f.now.Store(time.Now().Unix())
	go f.clock()
	return f
}

// MACAge is how long a learnt MAC stays without being seen.
const MACAge = 300

func (f *Fabric) clock() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			f.now.Store(now.Unix())
			if n++; n%30 == 0 {
				f.mu.Lock()
				for _, l := range f.lans {
					l.age(now.Unix() - MACAge)
				}
				f.mu.Unlock()
			}
		}
	}
}

// Close stops every port.
func (f *Fabric) Close() {
	f.mu.Lock()
	ports := make([]*Port, 0, len(f.ports))
	for _, p := range f.ports {
		ports = append(ports, p)
	}
	f.mu.Unlock()
	for _, p := range ports {
		_ = f.DelPort(p.name)
	}
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
}

// Errors the daemon maps to sentences.
var (
	ErrExists   = errors.New("already exists")
	ErrNotFound = errors.New("not found")
)

// AddPort creates a port with no peer and no lans.
func (f *Fabric) AddPort(name, kind string) (*Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ports[name]; ok {
		return nil, fmt.Errorf("port %q %w", name, ErrExists)
	}
	p := newPort(f, name, kind)
	f.ports[name] = p
	go p.writer()
	return p, nil
}

// Port returns the named port or nil.
func (f *Fabric) Port(name string) *Port {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ports[name]
}

// DelPort detaches a port from all lans, closes its peer and listener.
func (f *Fabric) DelPort(name string) error {
	f.mu.Lock()
	p, ok := f.ports[name]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("port %q %w", name, ErrNotFound)
	}
	for _, m := range *p.lans.Load() {
		f.detachLocked(m)
	}
	delete(f.ports, name)
	f.mu.Unlock()
	p.shutdown()
	return nil
}

// AddLan creates a lan explicitly; it then stays while empty.
func (f *Fabric) AddLan(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.lans[name]; ok {
		if l.explicit {
			return fmt.Errorf("lan %q %w", name, ErrExists)
		}
		l.explicit = true
		return nil
	}
	f.lans[name] = newLan(name, true)
	f.lanEvent(name, true)
	return nil
}

func (f *Fabric) lanEvent(name string, up bool) {
	if f.OnLan != nil {
		f.OnLan(name, up)
	}
}

// DelLan detaches every port from a lan and removes it.
func (f *Fabric) DelLan(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lans[name]
	if !ok {
		return fmt.Errorf("lan %q %w", name, ErrNotFound)
	}
	for _, m := range *l.members.Load() {
		f.detachLocked(m)
	}
	if _, still := f.lans[name]; still {
		delete(f.lans, name)
		f.lanEvent(name, false)
	}
	return nil
}

// HasLan tells whether a lan exists.
func (f *Fabric) HasLan(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.lans[name]
	return ok
}

// Attach puts a port on a lan (created if needed); it takes effect for
// the next frame. Attaching twice is an error.
func (f *Fabric) Attach(port, lan string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.ports[port]
	if !ok {
		return fmt.Errorf("port %q %w", port, ErrNotFound)
	}
	l, ok := f.lans[lan]
	if !ok {
		l = newLan(lan, false)
		f.lans[lan] = l
		f.lanEvent(lan, true)
	}
	for _, x := range *p.lans.Load() {
		if x.lan == l {
			return fmt.Errorf("port %q is already on lan %q", port, lan)
		}
	}
	m := &member{port: p, lan: l}
	p.lans.Store(appendCopy(*p.lans.Load(), m))
	l.members.Store(appendCopy(*l.members.Load(), m))
	if f.OnMember != nil {
		f.OnMember(port, lan, true)
	}
	f.hooksChanged(p) // lan captures follow membership (ext.go)
	return nil
}

// Detach takes a port off a lan at once. A lan not added explicitly
// disappears with its last port.
func (f *Fabric) Detach(port, lan string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.ports[port]
	if !ok {
		return fmt.Errorf("port %q %w", port, ErrNotFound)
	}
	l, ok := f.lans[lan]
	if !ok {
		return fmt.Errorf("lan %q %w", lan, ErrNotFound)
	}
	for _, m := range *p.lans.Load() {
		if m.lan == l {
			f.detachLocked(m)
			return nil
		}
	}
	return fmt.Errorf("port %q is not on lan %q", port, lan)
}

// detachLocked removes one membership. Readers holding the old snapshots
// may still forward a frame or two through it; Input re-checks
// membership for learnt MACs so no stale entry outlives the detach.
func (f *Fabric) detachLocked(m *member) {
	p, l := m.port, m.lan
	p.lans.Store(removeCopy(*p.lans.Load(), m))
	l.members.Store(removeCopy(*l.members.Load(), m))
	l.gone = l.gone.Add(m.c.snap())
	l.forget(p)
	if f.OnMember != nil {
		f.OnMember(p.name, l.name, false)
	}
	if len(*l.members.Load()) == 0 && !l.explicit {
		delete(f.lans, l.name)
		f.lanEvent(l.name, false)
	}
	f.hooksChanged(p)
}

func appendCopy[T any](s []T, x T) *[]T {
	n := make([]T, len(s), len(s)+1)
	copy(n, s)
	n = append(n, x)
	return &n
}

func removeCopy[T comparable](s []T, x T) *[]T {
	n := make([]T, 0, len(s))
	for _, y := range s {
		if y != x {
			n = append(n, y)
		}
	}
	return &n
}

// PortInfo and LanInfo are snapshots for `list`.
type PortInfo struct {
	Name, Kind, Socket string
	Connected          bool
	Lans               []string
	Counters           Counters
}

// LanInfo is one lan's snapshot.
type LanInfo struct {
	Name     string
	Ports    []string
	Counters Counters
}

// Snapshot returns ports and lans sorted by name.
func (f *Fabric) Snapshot() ([]PortInfo, []LanInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ports := make([]PortInfo, 0, len(f.ports))
	for _, p := range f.ports {
		pi := PortInfo{Name: p.name, Kind: p.kind, Connected: p.conn.Load() != nil, Counters: p.counters.snap(), Lans: []string{}}
		if l := p.listener.Load(); l != nil {
			pi.Socket = (*l).Addr()
		}
		for _, m := range *p.lans.Load() {
			pi.Lans = append(pi.Lans, m.lan.name)
		}
		sort.Strings(pi.Lans)
		ports = append(ports, pi)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	lans := make([]LanInfo, 0, len(f.lans))
	for _, l := range f.lans {
		li := LanInfo{Name: l.name, Counters: l.countersLocked(), Ports: []string{}}
		for _, m := range *l.members.Load() {
			li.Ports = append(li.Ports, m.port.name)
		}
		sort.Strings(li.Ports)
		lans = append(lans, li)
	}
	sort.Slice(lans, func(i, j int) bool { return lans[i].Name < lans[j].Name })
	return ports, lans
}
