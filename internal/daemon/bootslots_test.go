package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"cloonix/internal/machine"
)

// queuedKind is a kind whose boots are queued (or not, with plain).
type queuedKind struct {
	machine.Kind
	plain bool
}

func (k queuedKind) QueuedBoots() bool { return !k.plain }

// settleGuest is a guest that settles when its channel closes.
type settleGuest struct {
	machine.Guest
	settled chan struct{}
}

func (g settleGuest) WaitSettled(ctx context.Context) (string, string) {
	select {
	case <-g.settled:
		return machine.Running, ""
	case <-ctx.Done():
		return machine.Booting, ""
	}
}

// startAsync starts a guest through b in the background; the returned
// channel yields the guest (or nil) and its error.
func startAsync(b *bootSlots, k machine.Kind, quit chan struct{}, started *atomic.Int32, err error) chan settleGuest {
	out := make(chan settleGuest, 1)
	go func() {
		g := settleGuest{settled: make(chan struct{})}
		_, e := b.start(k, quit, func() (machine.Guest, error) {
			started.Add(1)
			if err != nil {
				return nil, err
			}
			return g, nil
		})
		if e != nil {
			g.settled = nil
		}
		out <- g
	}()
	return out
}

// gotWithin says whether ch yields within d (and what).
func gotWithin(ch chan settleGuest, d time.Duration) (settleGuest, bool) {
	select {
	case g := <-ch:
		return g, true
	case <-time.After(d):
		return settleGuest{}, false
	}
}

func TestBootSlots(t *testing.T) {
	const short, long = 50 * time.Millisecond, 5 * time.Second
	t.Run("queued kind waits for a settled boot", func(t *testing.T) {
		b, quit, n := newBootSlots(2, time.Hour), make(chan struct{}), new(atomic.Int32)
		g1, _ := gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long)
		gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long)
		third := startAsync(b, queuedKind{}, quit, n, nil)
		if _, ok := gotWithin(third, short); ok || n.Load() != 2 {
			t.Fatalf("a third boot started with 2 slots (%d started)", n.Load())
		}
		close(g1.settled)
		if _, ok := gotWithin(third, long); !ok {
			t.Fatal("the third boot did not start once the first settled")
		}
	})
	t.Run("other kinds never wait", func(t *testing.T) {
		b, quit, n := newBootSlots(1, time.Hour), make(chan struct{}), new(atomic.Int32)
		gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long)
		if _, ok := gotWithin(startAsync(b, queuedKind{plain: true}, quit, n, nil), long); !ok {
			t.Fatal("a kind without queued boots waited for a slot")
		}
	})
	t.Run("a boot that never settles gives its slot back after hold", func(t *testing.T) {
		b, quit, n := newBootSlots(1, 100*time.Millisecond), make(chan struct{}), new(atomic.Int32)
		gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long)
		if _, ok := gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long); !ok {
			t.Fatal("the slot was not given back after hold")
		}
	})
	t.Run("a failed start gives its slot back", func(t *testing.T) {
		b, quit, n := newBootSlots(1, time.Hour), make(chan struct{}), new(atomic.Int32)
		gotWithin(startAsync(b, queuedKind{}, quit, n, errors.New("no kernel")), long)
		if _, ok := gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long); !ok {
			t.Fatal("a failed start kept its slot")
		}
	})
	t.Run("stopping the switch ends the waits", func(t *testing.T) {
		b, quit, n := newBootSlots(1, time.Hour), make(chan struct{}), new(atomic.Int32)
		gotWithin(startAsync(b, queuedKind{}, quit, n, nil), long)
		waiting := startAsync(b, queuedKind{}, quit, n, nil)
		close(quit)
		g, ok := gotWithin(waiting, long)
		if !ok || g.settled != nil || n.Load() != 1 {
			t.Fatalf("a waiting boot was not ended by quit (returned %v, %d started)", ok, n.Load())
		}
	})
}
