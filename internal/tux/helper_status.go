package tux

import (
	"fmt"
	"slices"
)

// Status is what list shows of a helper.
type Status struct {
	State    string
	Pid      int
	Restarts int
	// Options: the plan's, then what the helper reported (e.g. the port
	// a listen on :0 got), which wins.
	Options  []Option
	Forwards []Forward
}

// Status returns the helper's state now.
func (h *Helper) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Status{State: h.state, Pid: h.pid, Restarts: h.restarts, Forwards: append([]Forward{}, h.forwards...)}
	for _, o := range h.plan.Shown {
		if _, ok := h.info[o.Name]; !ok {
			s.Options = append(s.Options, o)
		}
	}
	keys := make([]string, 0, len(h.info))
	for k := range h.info {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s.Options = append(s.Options, Option{k, h.info[k]})
	}
	return s
}

// Shown are the options the plan shows (for Spec.Others).
func (h *Helper) Shown() []Option { return h.plan.Shown }

// forwarder is a kind whose helper takes port forwards (slirp).
type forwarder interface{ forwards() }

func (h *Helper) canForward() error {
	if _, ok := h.kind.(forwarder); !ok {
		return fmt.Errorf("tux %s is a %s; forwards belong to slirp tux", h.spec.Name, h.spec.Kind)
	}
	return nil
}

// AddForward asks a slirp helper for a port forward, kept across
// relaunches.
func (h *Helper) AddForward(f Forward) error {
	if err := h.canForward(); err != nil {
		return err
	}
	h.mu.Lock()
	for _, x := range h.forwards {
		if x.Proto == f.Proto && x.Host == f.Host {
			h.mu.Unlock()
			return fmt.Errorf("forward %s %s already exists on %s (to %s); delete it first", f.Proto, f.Host, h.spec.Name, x.Guest)
		}
	}
	h.mu.Unlock()
	if _, err := h.Call(Request{Op: "forward_add", Proto: f.Proto, Host: f.Host, Guest: f.Guest}); err != nil {
		return err
	}
	h.mu.Lock()
	h.forwards = append(h.forwards, f)
	h.mu.Unlock()
	return nil
}

// DelForward removes the forward of proto and host.
func (h *Helper) DelForward(proto, host string) error {
	if err := h.canForward(); err != nil {
		return err
	}
	match := func(x Forward) bool { return x.Proto == proto && x.Host == host }
	h.mu.Lock()
	found := slices.ContainsFunc(h.forwards, match)
	h.mu.Unlock()
	if !found {
		return fmt.Errorf("forward %s %s: no such forward on %s", proto, host, h.spec.Name)
	}
	if _, err := h.Call(Request{Op: "forward_del", Proto: proto, Host: host}); err != nil {
		return err
	}
	h.mu.Lock()
	if i := slices.IndexFunc(h.forwards, match); i >= 0 {
		h.forwards = slices.Delete(h.forwards, i, i+1)
	}
	h.mu.Unlock()
	return nil
}
