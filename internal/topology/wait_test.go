package topology

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloonix/internal/proto"
)

// fakeLabs returns one lab per List call (the last one again at the end).
type fakeLabs struct {
	labs []map[string]string // VM name -> state
	n    int
	done chan struct{}
	err  error
}

func (f *fakeLabs) List() (*proto.Lab, error) {
	if f.err != nil {
		return nil, f.err
	}
	i := f.n
	if i >= len(f.labs) {
		i = len(f.labs) - 1
	}
	f.n++
	lab := &proto.Lab{}
	for name, st := range f.labs[i] {
		lab.VMs = append(lab.VMs, proto.VM{Name: name, State: st})
	}
	return lab, nil
}

func (f *fakeLabs) Done() <-chan struct{} { return f.done }

func TestWaitGuests(t *testing.T) {
	f := &fakeLabs{done: make(chan struct{}), labs: []map[string]string{
		{"A": "booting", "B": "booting", "C": "booting", "D": "booting"},
		{"A": "running", "B": "booting", "C": "booting", "D": "booting"},
		{"A": "running", "B": "crashed", "C": "booting"},
		{"A": "running", "B": "crashed", "C": "running"},
	}}
	d := NewDetails()
	ev := make(chan proto.Event, 1)
	ev <- proto.Event{Type: "vm_state", Attrs: map[string]string{"name": "B", "state": "crashed", "detail": "killed by signal 6"}}
	close(ev)
	d.Follow(ev)
	var out bytes.Buffer
	failed, err := WaitGuests(context.Background(), f, []string{"A", "B", "C", "D"}, WaitOptions{Timeout: time.Minute, Out: &out, TTY: false, Details: d, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || !strings.HasPrefix(failed[0], "B (crashed: killed by signal 6 after ") || !strings.HasPrefix(failed[1], "D (deleted after ") {
		t.Errorf("failed: %q", failed)
	}
	lines := out.String()
	for _, want := range []string{"booting A, B, C, D\n", "  A                ready ", "  B                FAILED ", "crashed: killed by signal 6", "  C                ready ", "  D                FAILED "} {
		if !strings.Contains(lines, want) {
			t.Errorf("output lacks %q:\n%s", want, lines)
		}
	}
	if strings.Contains(lines, "\x1b[") {
		t.Errorf("escape sequences without a terminal:\n%q", lines)
	}
}

func TestWaitGuestsTimeoutAndTerminal(t *testing.T) {
	f := &fakeLabs{done: make(chan struct{}), labs: []map[string]string{{"S": "booting"}}}
	var out bytes.Buffer
	failed, err := WaitGuests(context.Background(), f, []string{"S"}, WaitOptions{Timeout: 20 * time.Millisecond, Out: &out, TTY: true, Details: nil, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || !strings.Contains(failed[0], "S (still booting, over --timeout after") {
		t.Errorf("failed: %q", failed)
	}
	// On a terminal the line is redrawn in place.
	if !strings.Contains(out.String(), "\x1b[1A\r\x1b[2K  S                FAILED") {
		t.Errorf("terminal output: %q", out.String())
	}
}

func TestWaitGuestsLostSwitch(t *testing.T) {
	f := &fakeLabs{done: make(chan struct{}), labs: []map[string]string{{"S": "booting"}}}
	close(f.done)
	if _, err := WaitGuests(context.Background(), f, []string{"S"}, WaitOptions{Timeout: time.Minute, Out: &bytes.Buffer{}, TTY: false, Details: nil, Poll: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("err = %v", err)
	}
	f = &fakeLabs{err: errors.New("boom"), done: make(chan struct{})}
	if _, err := WaitGuests(context.Background(), f, []string{"S"}, WaitOptions{Timeout: time.Minute, Out: &bytes.Buffer{}, TTY: false, Details: nil, Poll: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v", err)
	}
}
