package topology

import (
	"fmt"
	"path/filepath"
	"strings"

	"cloonix/internal/proto"
)

// Caller sends one typed control request; *proto.Client is one.
type Caller interface {
	Do(req proto.Request, reply any) error
}

// Request is the control request for one step. demo is the absolute
// demo folder given to new VMs ("" for none).
func (s Step) Request(demo string) proto.Request {
	switch s.Op {
	case AddLan:
		return &proto.AddLan{Name: s.Name}
	case DelLan:
		return &proto.DelLan{Name: s.Name}
	case AddVM:
		v := s.VM
		r := &proto.AddVM{Name: v.Name, Eth: proto.Int(len(v.Eths)), Type: v.Type,
			Rootfs: v.Rootfs, Kernel: v.Kernel, Transport: v.Transport, MgmtIP: v.MgmtIP, Demo: demo}
		if v.Mem > 0 {
			r.Mem = proto.Int(v.Mem)
		}
		if v.CPU > 0 {
			r.CPU = proto.Int(v.CPU)
		}
		if v.State == "stopped" {
			r.State = "stopped"
		}
		switch {
		case filepath.IsAbs(v.Disk):
			r.Rootfs = v.Disk
		case v.Disk != "" && demo != "":
			r.Rootfs = filepath.Join(demo, DisksDir, v.Disk)
		}
		return r
	case DelVM:
		return &proto.DelVM{Name: s.Name}
	case StopVM:
		return &proto.StopVM{Name: s.Name}
	case StartVM:
		return &proto.StartVM{Name: s.Name}
	case Link:
		return &proto.Link{Port: s.Port, State: s.Spec}
	case AddTux:
		x := s.Tux
		r := &proto.AddTux{Name: x.Name, Kind: x.Kind}
		for _, o := range x.Options {
			r.Option(o.Name, o.Value)
		}
		return r
	case DelTux:
		return &proto.DelTux{Name: s.Name}
	case Attach:
		return &proto.Attach{Port: s.Port, Lan: s.Lan}
	case Detach:
		return &proto.Detach{Port: s.Port, Lan: s.Lan}
	case Impair:
		if s.Spec == "" {
			return &proto.Impair{Target: proto.Target{Port: s.Port}, Clear: true}
		}
		return &proto.Impair{Target: proto.Target{Port: s.Port}, Spec: s.Spec}
	case SetPos:
		return &proto.SetPos{Kind: s.Kind, Name: s.Name, X: proto.Int(s.X), Y: proto.Int(s.Y)}
	case AddForward:
		return &proto.ForwardAdd{Name: s.Name, Proto: s.Forward.Proto, Host: s.Forward.Host, Guest: s.Forward.Guest}
	case DelForward:
		return &proto.ForwardDel{Name: s.Name, Proto: s.Forward.Proto, Host: s.Forward.Host, Guest: s.Forward.Guest}
	}
	panic(fmt.Sprintf("topology: step %q has no request", s.Op))
}

// undo is the request that takes back an undoable step.
func (s Step) undo() (proto.Request, bool) {
	switch s.Op {
	case AddLan:
		return &proto.DelLan{Name: s.Name}, true
	case AddVM:
		return &proto.DelVM{Name: s.Name}, true
	case AddTux:
		return &proto.DelTux{Name: s.Name}, true
	}
	// Attaches, impairs and forwards of a new VM or tux go with it.
	return nil, false
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
	added := map[string]bool{}
	for _, s := range p.Steps {
		if s.Op == AddVM && p.WaitReady != nil {
			// <after>: the VMs this one follows must be ready first.
			var wait []string
			for _, a := range s.VM.After {
				if added[a] {
					wait = append(wait, a)
				}
			}
			if len(wait) > 0 {
				if err := p.WaitReady(wait); err != nil {
					return &ApplyError{Step: s, Err: fmt.Errorf("waiting for %s: %v", strings.Join(wait, ", "), err), Done: done}
				}
			}
			added[s.Name] = true
		}
		if progress != nil {
			progress(s)
		}
		if err := c.Do(s.Request(demo), nil); err != nil {
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
				if req, ok := done[i].undo(); ok {
					if err := c.Do(req, nil); err != nil {
						ae.UndoErrs = append(ae.UndoErrs, fmt.Sprintf("%s %s: %v", req.Verb(), done[i].Name, err))
					}
				}
			}
			return ae
		}
		done = append(done, s)
	}
	return nil
}
