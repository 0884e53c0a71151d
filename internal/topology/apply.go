package topology

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Caller sends one control request; *proto.Client is one.
type Caller interface {
	Call(verb string, args map[string]string) ([]byte, error)
}

// Request is the control request (verb and attributes) for one step.
// demo is the absolute demo folder given to new VMs ("" for none).
func (s Step) Request(demo string) (string, map[string]string) {
	switch s.Op {
	case AddLan:
		return "add_lan", map[string]string{"name": s.Name}
	case DelLan:
		return "del_lan", map[string]string{"name": s.Name}
	case AddVM:
		v := s.VM
		a := map[string]string{"name": v.Name, "eth": strconv.Itoa(len(v.Eths))}
		set := func(k, val string) {
			if val != "" {
				a[k] = val
			}
		}
		set("type", v.Type)
		if v.Mem > 0 {
			a["mem"] = strconv.Itoa(v.Mem)
		}
		if v.CPU > 0 {
			a["cpu"] = strconv.Itoa(v.CPU)
		}
		set("rootfs", v.Rootfs)
		set("kernel", v.Kernel)
		set("transport", v.Transport)
		set("demo", demo)
		set("state", v.State)
		if v.Disk != "" && demo != "" {
			a["rootfs"] = filepath.Join(demo, DisksDir, v.Disk)
		}
		return "add_vm", a
	case DelVM:
		return "del_vm", map[string]string{"name": s.Name}
	case StopVM:
		return "stop_vm", map[string]string{"name": s.Name}
	case StartVM:
		return "start_vm", map[string]string{"name": s.Name}
	case Link:
		return "link", map[string]string{"port": s.Port, "state": s.Spec}
	case AddTux:
		x := s.Tux
		a := map[string]string{"name": x.Name, "kind": x.Kind}
		for _, o := range x.Options {
			a[o.Name] = o.Value
		}
		return "add_tux", a
	case DelTux:
		return "del_tux", map[string]string{"name": s.Name}
	case Attach:
		return "attach", map[string]string{"port": s.Port, "lan": s.Lan}
	case Detach:
		return "detach", map[string]string{"port": s.Port, "lan": s.Lan}
	case Impair:
		if s.Spec == "" {
			return "impair", map[string]string{"port": s.Port, "clear": "true"}
		}
		return "impair", map[string]string{"port": s.Port, "spec": s.Spec}
	case SetPos:
		return "set_pos", map[string]string{"kind": s.Kind, "name": s.Name, "x": strconv.Itoa(s.X), "y": strconv.Itoa(s.Y)}
	case AddForward, DelForward:
		verb := "forward_add"
		if s.Op == DelForward {
			verb = "forward_del"
		}
		return verb, map[string]string{"name": s.Name, "proto": s.Forward.Proto, "host": s.Forward.Host, "guest": s.Forward.Guest}
	}
	return string(s.Op), nil
}

// undo is the request that takes back an undoable step.
func (s Step) undo() (string, map[string]string, bool) {
	switch s.Op {
	case AddLan:
		return "del_lan", map[string]string{"name": s.Name}, true
	case AddVM:
		return "del_vm", map[string]string{"name": s.Name}, true
	case AddTux:
		return "del_tux", map[string]string{"name": s.Name}, true
	}
	// Attaches, impairs and forwards of a new VM or tux go with it.
	return "", nil, false
}

// ApplyError is a failed apply: which step, and whether the lab was put
// back as it was.
type ApplyError struct {
	Step     Step
	Err      error
	Undone   bool     // the steps done were taken back; the lab is unchanged
	Done     []Step   // steps that stayed applied (when not Undone)
	UndoErrs []string // undo requests that failed
}

func (e *ApplyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Step, e.Err)
	switch {
	case e.Undone && len(e.UndoErrs) == 0:
		b.WriteString("; nothing was changed")
	case e.Undone:
		fmt.Fprintf(&b, "; undoing what was done failed too: %s", strings.Join(e.UndoErrs, "; "))
	default:
		fmt.Fprintf(&b, "; %d earlier steps stay applied (see `cloonix ctrl list`)", len(e.Done))
	}
	return b.String()
}

// Apply runs the plan's steps in order. progress, if not nil, is told of
// each step before it is sent. If a step fails while only undoable steps
// were done, those are taken back (newest first) and the error says that
// nothing changed.
func (p *Plan) Apply(c Caller, demo string, progress func(Step)) error {
	var done []Step
	for _, s := range p.Steps {
		if progress != nil {
			progress(s)
		}
		verb, args := s.Request(demo)
		if _, err := c.Call(verb, args); err != nil {
			ae := &ApplyError{Step: s, Err: err}
			allUndoable := true
			for _, d := range done {
				allUndoable = allUndoable && d.Undoable
			}
			if !allUndoable {
				ae.Done = done
				return ae
			}
			ae.Undone = true
			for i := len(done) - 1; i >= 0; i-- {
				if verb, args, ok := done[i].undo(); ok {
					if _, err := c.Call(verb, args); err != nil {
						ae.UndoErrs = append(ae.UndoErrs, fmt.Sprintf("%s %s: %v", verb, done[i].Name, err))
					}
				}
			}
			return ae
		}
		done = append(done, s)
	}
	return nil
}
