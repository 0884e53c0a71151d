package fabric

// SetLinkDown unplugs (true) or plugs back (false) the port's cable:
// while down, no frame enters the lans from the port and none is
// delivered to it (each is counted as a drop on the port).
func (p *Port) SetLinkDown(down bool) { p.down.Store(down) }

// LinkDown tells whether the port's link is down.
func (p *Port) LinkDown() bool { return p.down.Load() }

// dropIfDown drops (and counts) f when the link is down.
func (p *Port) dropIfDown(f *Frame) bool {
	if !p.down.Load() {
		return false
	}
	p.counters.drops.Add(1)
	f.Release()
	return true
}
