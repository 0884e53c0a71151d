package daemon

import (
	"context"
	"errors"
	"time"

	"cloonix/internal/machine"
)

// bootSlots lets at most cap(ch) guests of a queued kind
// (machine.QueuedBoots) boot at once; the others wait in Start for a
// slot. A slot is given back when its guest settles (running, crashed,
// stopped) or after hold, whichever comes first.
type bootSlots struct {
	ch   chan struct{}
	hold time.Duration
}

func newBootSlots(n int, hold time.Duration) *bootSlots {
	return &bootSlots{ch: make(chan struct{}, n), hold: hold}
}

// errStopping ends a boot still waiting for a slot when the switch stops.
var errStopping = errors.New("the switch is stopping; the guest was not started")

// start runs start at once for other kinds; for a queued kind once a
// slot is free, or not at all (errStopping) if quit closes first.
func (b *bootSlots) start(k machine.Kind, quit <-chan struct{}, start func() (machine.Guest, error)) (machine.Guest, error) {
	if q, ok := k.(machine.QueuedBoots); !ok || !q.QueuedBoots() {
		return start()
	}
	select {
	case b.ch <- struct{}{}:
	case <-quit:
		return nil, errStopping
	}
	g, err := start()
	if err != nil {
		<-b.ch
		return nil, err
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.hold)
		defer cancel()
		g.WaitSettled(ctx)
		<-b.ch
	}()
	return g, nil
}
