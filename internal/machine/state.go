package machine

import (
	"context"
	"sync"
)

// StateCell is a guest's state and why it is in it, shared by the guest
// kinds. A change closes a channel, so WaitSettled needs no polling.
// Stopped and crashed are final. The zero value is booting.
type StateCell struct {
	mu            sync.Mutex
	state, detail string
	changed       chan struct{} // closed and replaced on each change
}

// get returns the state, why, and the channel closed on the next change;
// callers hold c.mu.
func (c *StateCell) get() (string, string, chan struct{}) {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	if c.state == "" {
		return Booting, c.detail, c.changed
	}
	return c.state, c.detail, c.changed
}

// Set changes the state; it tells whether it changed (not when the state
// is the same or final), for the caller to report it.
func (c *StateCell) Set(state, detail string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, _, ch := c.get()
	if cur == state || cur == Stopped || cur == Crashed {
		return false
	}
	c.state, c.detail = state, detail
	close(ch)
	c.changed = make(chan struct{})
	return true
}

// Get returns the current state and why.
func (c *StateCell) Get() (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, det, _ := c.get()
	return st, det
}

// WaitSettled waits until the state is no longer booting, or ctx ends.
func (c *StateCell) WaitSettled(ctx context.Context) (string, string) {
	for {
		c.mu.Lock()
		st, det, ch := c.get()
		c.mu.Unlock()
		if st != Booting {
			return st, det
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, det
		}
	}
}
