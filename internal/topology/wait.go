package topology

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"cloonix/internal/proto"
)

// Details keeps the last detail events gave about each VM.
type Details struct {
	mu sync.Mutex
	m  map[string]string
}

// NewDetails is an empty Details; Follow fills it.
func NewDetails() *Details { return &Details{m: map[string]string{}} }

// Follow reads events until ev closes, keeping why each VM failed.
func (v *Details) Follow(ev <-chan proto.Event) {
	for e := range ev {
		name := e.Attrs["name"]
		var d string
		switch e.Type {
		case "vm_state":
			d = e.Attrs["detail"]
		case "vm_boot_timeout":
			d = "no answer from its agent after " + e.Attrs["after"] + ", console log " + e.Attrs["console"]
		}
		if name != "" && d != "" {
			v.mu.Lock()
			v.m[name] = d
			v.mu.Unlock()
		}
	}
}

func (v *Details) get(name string) string {
	if v == nil {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[name]
}

func orBooting(s string) string {
	if s == "" {
		return "booting"
	}
	return s
}

// LabSource is what WaitGuests needs of a switch connection.
type LabSource interface {
	List() (*proto.Lab, error)
	Done() <-chan struct{}
}

// WaitOptions say how WaitGuests follows and shows the guests.
type WaitOptions struct {
	Timeout time.Duration // how long a guest may take to be ready
	Out     io.Writer     // where progress goes
	TTY     bool          // Out is a terminal: redraw the lines in place
	Details *Details      // why guests failed, from events (may be nil)
	Poll    time.Duration // how often the lab is listed (default 200ms)
}

// bootGuest is one machine being waited for.
type bootGuest struct {
	name  string
	state string // booting, ready, failed
	why   string // for failed: the state or "not ready after ..."
	took  time.Duration
}

func (g *bootGuest) line(now time.Duration) string {
	switch g.state {
	case "ready":
		return fmt.Sprintf("%-16s ready    %6.1fs", g.name, g.took.Seconds())
	case "failed":
		return fmt.Sprintf("%-16s FAILED   %6.1fs  %s", g.name, g.took.Seconds(), g.why)
	}
	return fmt.Sprintf("%-16s booting  %6.1fs", g.name, now.Seconds())
}

// WaitGuests follows the guests' states until each is ready (running:
// its agent answered) or failed (crashed, stopped, gone, or not ready
// within the timeout). On a terminal the lines are redrawn in place;
// elsewhere one line is printed per change. It returns the failed ones;
// ctx ending (an interrupt) stops it with an error.
func WaitGuests(ctx context.Context, c LabSource, names []string, o WaitOptions) ([]string, error) {
	timeout, out, tty, details := o.Timeout, o.Out, o.TTY, o.Details
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	start := time.Now()
	gs := make([]*bootGuest, len(names))
	for i, n := range names {
		gs[i] = &bootGuest{name: n, state: "booting"}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	if !tty {
		fmt.Fprintf(out, "booting %s\n", strings.Join(names, ", "))
	}
	drawn := false
	draw := func() {
		if !tty {
			return
		}
		if drawn {
			fmt.Fprintf(out, "\x1b[%dA", len(gs))
		}
		el := time.Since(start)
		for _, g := range gs {
			fmt.Fprintf(out, "\r\x1b[2K  %s\n", g.line(el))
		}
		drawn = true
	}
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	for {
		lab, err := c.List()
		if err != nil {
			return nil, fmt.Errorf("following the guests: %v", err)
		}
		state := map[string]string{}
		for _, v := range lab.VMs {
			state[v.Name] = v.State
		}
		el := time.Since(start)
		pending := 0
		for _, g := range gs {
			if g.state != "booting" {
				continue
			}
			s, ok := state[g.name]
			switch {
			case s == "running":
				g.state, g.took = "ready", el
			case !ok:
				g.state, g.took, g.why = "failed", el, "deleted"
			case s == "crashed" || s == "stopped":
				g.state, g.took, g.why = "failed", el, s
				if d := details.get(g.name); d != "" {
					g.why += ": " + d
				}
			case el > timeout:
				g.state, g.took, g.why = "failed", el, "still "+orBooting(s)+", over --timeout"
				if d := details.get(g.name); d != "" {
					g.why += "; " + d
				}
			default:
				pending++
				continue
			}
			if !tty {
				fmt.Fprintf(out, "  %s\n", g.line(el))
			}
		}
		draw()
		if pending == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, errors.New("interrupted; the lab stays as it is (`cloonix ctrl list`)")
		case <-c.Done():
			return nil, errors.New("the switch closed the connection while guests were booting")
		}
	}
	var failed []string
	for _, g := range gs {
		if g.state == "failed" {
			failed = append(failed, fmt.Sprintf("%s (%s after %.1fs)", g.name, g.why, g.took.Seconds()))
		}
	}
	return failed, nil
}

// GuestsToWait are the guests a load waits for once its plan is applied:
// those it started, and the file's guests still booting from before.
func GuestsToWait(p *Plan, before *proto.Lab, t *Topology) []string {
	var wait []string
	for _, s := range p.Steps {
		// A guest added stopped boots later (ctrl start vm); one started
		// from stopped is waited for.
		if s.Op == AddVM && s.VM.State != "stopped" || s.Op == StartVM {
			wait = append(wait, s.Name)
		}
	}
	for _, v := range before.VMs {
		if t.VM(v.Name) != nil && v.State == "booting" && !contains(wait, v.Name) {
			wait = append(wait, v.Name)
		}
	}
	return wait
}
