package machine

import (
	"context"
	"testing"
)

// TestStateCell: changes are reported once, final states stay, and
// WaitSettled returns the first state past booting.
func TestStateCell(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sets      []string
		changed   []bool
		wantState string
	}{
		{"zero value", nil, nil, Booting},
		{"running", []string{Running}, []bool{true}, Running},
		{"same twice", []string{Running, Running}, []bool{true, false}, Running},
		{"stopped is final", []string{Running, Stopped, Running}, []bool{true, true, false}, Stopped},
		{"crashed is final", []string{Crashed, Stopped}, []bool{true, false}, Crashed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c StateCell
			for i, s := range tc.sets {
				if got := c.Set(s, "why "+s); got != tc.changed[i] {
					t.Fatalf("Set(%s) = %v, want %v", s, got, tc.changed[i])
				}
			}
			if st, _ := c.Get(); st != tc.wantState {
				t.Fatalf("state %s, want %s", st, tc.wantState)
			}
		})
	}
	var c StateCell
	done := make(chan string)
	go func() {
		st, _ := c.WaitSettled(context.Background())
		done <- st
	}()
	c.Set(Running, "")
	if st := <-done; st != Running {
		t.Fatalf("WaitSettled = %s, want running", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var b StateCell
	if st, _ := b.WaitSettled(ctx); st != Booting {
		t.Fatalf("WaitSettled with ctx done = %s, want booting", st)
	}
}
