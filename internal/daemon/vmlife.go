package daemon

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/proto"
)

// Lifecycle verbs (DESIGN section 10): stop_vm and start_vm keep the
// guest's disk, ports and lans; save_vm writes a standalone image of its
// disk; link pulls or plugs a port's cable. The kinds do the guest side
// (machine.Guest Shutdown and SetLink, machine.Kind SaveDisk).

func vmLifeFeature() Feature {
	return Feature{Name: "vm lifecycle",
		Verbs: []Verb{typed[proto.StopVM]((*Daemon).stopVM), typed[proto.StartVM]((*Daemon).startVM),
			typed[proto.SaveVM]((*Daemon).saveVM), typed[proto.Link]((*Daemon).setLink)},
	}
}

// claimVM finds a VM for a lifecycle verb and marks it busy; check says
// whether its state allows the verb. release undoes the mark.
func (d *Daemon) claimVM(name string, check func(state string) error) (*vmEntry, error) {
	t := d.vmt()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.vms[name]
	if !ok {
		return nil, fmt.Errorf("vm %q: no such vm (vms: %s)", name, vmNames(t))
	}
	if e.g == nil || e.deleting || e.busy {
		return nil, fmt.Errorf("vm %q is being created, deleted, stopped, started or saved; try again in a moment", name)
	}
	st, _ := e.g.State()
	if err := check(st); err != nil {
		return nil, err
	}
	e.busy = true
	return e, nil
}

func (d *Daemon) release(e *vmEntry) {
	t := d.vmt()
	t.mu.Lock()
	e.busy = false
	t.mu.Unlock()
}

func (d *Daemon) stopVM(c *client, r *proto.StopVM) (any, error) {
	name, timeout := r.Name, machine.ShutdownTimeout
	if r.Timeout != nil {
		timeout = time.Duration(*r.Timeout) * time.Second
	}
	e, err := d.claimVM(name, func(st string) error {
		if st == machine.Stopped || st == machine.Crashed {
			return fmt.Errorf("vm %s is already %s; `cloonix ctrl start vm %s` boots it again", name, st, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer d.release(e)
	t := d.vmt()
	t.mu.Lock()
	e.keepPorts = true
	g := e.g
	t.mu.Unlock()
	g.Shutdown(timeout)
	st, _ := g.State()
	return &proto.VMReply{Name: name, State: st}, nil
}

func (d *Daemon) startVM(c *client, r *proto.StartVM) (any, error) {
	name := r.Name
	e, err := d.claimVM(name, func(st string) error {
		if st == machine.Running || st == machine.Booting {
			return fmt.Errorf("vm %s is %s already; `cloonix ctrl stop vm %s` stops it first", name, st, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer d.release(e)
	g, err := d.restartVM(e)
	if err != nil {
		return nil, err
	}
	if r.Wait {
		ctx, cancel := context.WithTimeout(context.Background(), g.DefaultBootTimeout())
		st, det := g.WaitSettled(ctx)
		cancel()
		if st != machine.Running {
			return nil, fmt.Errorf("vm %s is %s (%s); its console is logged in %s", name, st, det, g.ConsoleLog())
		}
	}
	st, _ := g.State()
	return &proto.VMReply{Name: name, Pid: g.Pid(), State: st, Accel: g.Accelerator()}, nil
}

// restartVM boots a stopped or crashed guest from its kept disk with its
// ports (made again if a crash freed them) and their link states.
func (d *Daemon) restartVM(e *vmEntry) (machine.Guest, error) {
	t := d.vmt()
	t.mu.Lock()
	settled := e.settled
	t.mu.Unlock()
	if settled != nil {
		// The old guest's end is being handled (vmState): wait for its
		// ports to be freed or kept, else a crashed node's freeing
		// removes the ports made here (TestCntMgmt saw "port c1:mgmt0
		// already exists"). A Start that failed leaves no end to wait for.
		select {
		case <-settled:
		case <-time.After(10 * time.Second):
		}
	}
	t.mu.Lock()
	spec, kind, ports := e.spec, e.kind, e.ports
	t.mu.Unlock()
	spec.KeepDisk = true
	pps := spec.Ports()
	if mp, ok := spec.MgmtPort(); ok {
		pps = append(pps, mp)
	}
	if ports != nil && spec.PortKind == cnt.PortKind {
		// A node's taps went with its network namespace: new ones, on
		// the same lans, impairments and links.
		if err := d.renewPorts(e.name, ports, pps); err != nil {
			return nil, err
		}
	}
	if ports == nil {
		for i, pp := range pps {
			p := fmt.Sprintf("%s:eth%d", e.name, i)
			isMgmt := i == len(spec.Ports())
			if isMgmt {
				p = e.name + mgmtPortTail
			}
			_, _, err := d.AddPort(p, pp.Kind, pp.Path, "")
			if err == nil {
				ports = append(ports, p)
			}
			if err == nil && isMgmt {
				err = d.Fab.Attach(p, mgmtLan)
			}
			if err != nil {
				for _, q := range ports {
					_ = d.DelPort(q)
				}
				return nil, fmt.Errorf("vm %s: %v", e.name, err)
			}
		}
	}
	t.mu.Lock()
	e.ports, e.keepPorts = ports, false
	e.settled = make(chan struct{})
	t.mu.Unlock()
	g, err := d.startGuest(kind, spec, d.vmEvents(e))
	if err != nil {
		return nil, fmt.Errorf("vm %s: %v", e.name, err)
	}
	t.mu.Lock()
	e.g = g
	t.mu.Unlock()
	d.Emit("vm_state", "name", e.name, "state", machine.Booting)
	for i, p := range ports {
		if fp := d.Fab.Port(p); fp != nil && fp.LinkDown() {
			if err := g.SetLink(i, false); err != nil && !errors.Is(err, machine.ErrNoCarrier) {
				log.Printf("vm %s: eth%d stays down in the switch, but the guest sees a carrier: %v", e.name, i, err)
			}
		}
	}
	d.journalChanged()
	return g, nil
}

func (d *Daemon) saveVM(c *client, r *proto.SaveVM) (any, error) {
	name, file := r.Name, r.File
	if err := checkNewFile(file); err != nil {
		return nil, fmt.Errorf("save vm %s: %v", name, err)
	}
	e, err := d.claimVM(name, func(string) error { return nil })
	if err != nil {
		return nil, err
	}
	defer d.release(e)
	return d.saveDisk(e, file)
}

// saveDisk writes e's disk to file through a temporary file in the same
// folder, so a failed save leaves nothing behind; progress goes out as
// save_progress events.
func (d *Daemon) saveDisk(e *vmEntry, file string) (*proto.SavedReply, error) {
	t := d.vmt()
	t.mu.Lock()
	spec, kind, g := e.spec, e.kind, e.g
	t.mu.Unlock()
	if st, _ := g.State(); st == machine.Stopped || st == machine.Crashed {
		g = nil
	}
	// The temporary name keeps file's ending: a container's save picks a
	// tree or an archive by it.
	tmp := filepath.Join(filepath.Dir(file), ".part-"+filepath.Base(file))
	_ = os.RemoveAll(tmp)
	var last time.Time
	progress := func(done, total int64) {
		if time.Since(last) < 500*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		d.Emit("save_progress", "name", e.name, "file", file, "done", strconv.FormatInt(done, 10), "total", strconv.FormatInt(total, 10))
	}
	if err := kind.SaveDisk(&spec, g, tmp, progress); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("save vm %s to %s: %v", e.name, file, err)
	}
	// No clobbering: a file that appeared meanwhile wins (a container's
	// save may be a directory: a rename, not a link).
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, file, unix.RENAME_NOREPLACE); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("save vm %s: %s: %v", e.name, file, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	d.Emit("vm_saved", "name", e.name, "file", file)
	return &proto.SavedReply{Name: e.name, File: file, Size: fi.Size()}, nil
}

// checkNewFile refuses a destination that is relative, exists, or whose
// folder is missing or not writable, before any copy starts.
func checkNewFile(file string) error {
	if !filepath.IsAbs(file) {
		return fmt.Errorf("file %q: give an absolute path", file)
	}
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s exists; remove it or choose another file", file)
	}
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %s does not exist; create it first", dir)
	}
	f, err := os.CreateTemp(dir, ".cloonix-probe-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s (%v); choose a writable folder", dir, errors.Unwrap(err))
	}
	f.Close()
	_ = os.Remove(f.Name())
	return nil
}

func (d *Daemon) setLink(c *client, r *proto.Link) (any, error) {
	port, state := r.Port, r.State
	p := d.Fab.Port(port)
	if p == nil {
		return nil, fmt.Errorf("port %q: no such port (VM:ethN or a tux name; see `cloonix ctrl list`)", port)
	}
	down := state == "down"
	carrier := "switch" // frames stop in the switch; the guest sees no change
	if g, n := d.ethGuest(port); g != nil {
		err := g.SetLink(n, !down)
		if errors.Is(err, machine.ErrNoCarrier) && n < len(g.Ports()) && g.Ports()[n].Kind == cnt.PortKind {
			err = d.tapCarrier(g.Ports()[n].Path, !down) // the switch holds a node's taps
		}
		switch {
		case err == nil:
			carrier = "guest"
		case errors.Is(err, machine.ErrNoCarrier):
		default:
			return nil, fmt.Errorf("link %s %s: %v", port, state, err)
		}
	}
	p.SetLinkDown(down)
	d.Emit("link_"+state, "port", port, "carrier", carrier)
	d.journalChanged()
	return &proto.LinkReply{Port: port, State: state, Carrier: carrier}, nil
}

// renewPorts makes ports again with what they had: lans, impairment,
// link state; mgmt0's goes back on the management lan.
func (d *Daemon) renewPorts(vm string, ports []string, pp []machine.Port) error {
	var eths []proto.Eth
	for _, v := range d.Lab().VMs {
		if v.Name == vm {
			eths = v.Eths
		}
	}
	c := localCaller{d}
	for i, p := range ports {
		_ = d.DelPort(p)
		if _, _, err := d.AddPort(p, pp[i].Kind, pp[i].Path, ""); err != nil {
			return fmt.Errorf("vm %s: %v", vm, err)
		}
		if isMgmtPort(p) {
			if err := d.Fab.Attach(p, mgmtLan); err != nil {
				return fmt.Errorf("vm %s: management port: %v", vm, err)
			}
			continue
		}
		if i >= len(eths) {
			continue
		}
		for _, l := range eths[i].Lans {
			if err := c.Do(&proto.Attach{Port: p, Lan: l}); err != nil {
				return fmt.Errorf("vm %s: %v", vm, err)
			}
		}
		if eths[i].Impair != "" {
			if err := c.Do(&proto.Impair{Target: proto.Target{Port: p}, Spec: eths[i].Impair}); err != nil {
				return fmt.Errorf("vm %s: %v", vm, err)
			}
		}
		if fp := d.Fab.Port(p); fp != nil && eths[i].Link == "down" {
			fp.SetLinkDown(true)
			_ = d.tapCarrier(pp[i].Path, false)
		}
	}
	return nil
}

// ethGuest finds the running guest owning port VM:ethN.
func (d *Daemon) ethGuest(port string) (machine.Guest, int) {
	i := strings.LastIndex(port, ":eth")
	if i < 0 {
		return nil, 0
	}
	n, err := strconv.Atoi(port[i+4:])
	if err != nil {
		return nil, 0
	}
	t := d.vmt()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.vms[port[:i]]
	if e == nil || e.g == nil || n >= e.eths {
		return nil, 0
	}
	return e.g, n
}

// fillLinks marks the ports, eths and tux whose link is down in list.
func (d *Daemon) fillLinks(lab *proto.Lab) {
	down := func(name string) string {
		if p := d.Fab.Port(name); p != nil && p.LinkDown() {
			return "down"
		}
		return ""
	}
	for i := range lab.Ports {
		lab.Ports[i].Link = down(lab.Ports[i].Name)
	}
	for i := range lab.VMs {
		for j := range lab.VMs[i].Eths {
			lab.VMs[i].Eths[j].Link = down(lab.VMs[i].Eths[j].Port)
		}
	}
	for i := range lab.Tux {
		lab.Tux[i].Link = down(lab.Tux[i].Name)
	}
}

// stoppedGuest stands for a guest added stopped (a topology file's
// <state>stopped</state>) that never ran: `start vm` boots it.
type stoppedGuest struct {
	s      machine.Spec
	exited chan struct{}
}

func newStoppedGuest(s machine.Spec) *stoppedGuest {
	g := &stoppedGuest{s: s, exited: make(chan struct{})}
	close(g.exited)
	return g
}

func (g *stoppedGuest) Pid() int                { return 0 }
func (g *stoppedGuest) State() (string, string) { return machine.Stopped, "never started" }
func (g *stoppedGuest) WaitSettled(context.Context) (string, string) {
	return g.State()
}
func (g *stoppedGuest) AwaitAgent(context.Context, time.Duration) error { return nil }
func (g *stoppedGuest) Exec(context.Context, []string, []byte) ([]byte, []byte, int, error) {
	return nil, nil, -1, fmt.Errorf("vm %s is stopped: %w; `cloonix ctrl start vm %s` boots it", g.s.Name, machine.ErrNotRunning, g.s.Name)
}
func (g *stoppedGuest) ConsolePath() string     { return g.s.ConsolePath() }
func (g *stoppedGuest) ConsoleLog() string      { return g.s.ConsoleLog() }
func (g *stoppedGuest) Stop()                   {}
func (g *stoppedGuest) Shutdown(time.Duration)  {}
func (g *stoppedGuest) SetLink(int, bool) error { return nil }
func (g *stoppedGuest) Exited() <-chan struct{} { return g.exited }
func (g *stoppedGuest) Accelerator() string     { return "" }
func (g *stoppedGuest) DefaultBootTimeout() time.Duration {
	return machine.DefaultBootTimeout(g.s.Type, "")
}
func (g *stoppedGuest) Ports() []machine.Port { return g.s.Ports() }
