package daemon

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/machine/kinds"
	"cloonix/internal/proto"
	"cloonix/internal/wire"
)

// Machines (DESIGN sections 3 and 6): add_vm, del_vm, exec, console.
// Each VM keeps its files in work_dir/NAME and its ports NAME:ethN.

func vmsFeature() Feature {
	return Feature{Name: "vms",
		Verbs: []Verb{
			typed((*Daemon).addVM), checked[proto.DelVM]((*Daemon).delVM),
			typed((*Daemon).execVM), typed((*Daemon).consoleVM),
		},
		Listen: map[string]func(d *Daemon, path string) (fabric.Listener, error){
			"bess":               func(_ *Daemon, path string) (fabric.Listener, error) { return wire.ListenBess(path) },
			"daemon":             func(_ *Daemon, path string) (fabric.Listener, error) { return wire.ListenDaemon(path) },
			cnt.PortKind:         (*Daemon).listenTap,  // container nodes' eths (cnt_tap.go)
			machine.VTapPortKind: (*Daemon).listenVTap, // QEMU guests' eths (vtap.go)
		},
		List:  listVMs,
		Start: func(d *Daemon) { d.OnStop(d.stopAllVMs) },
	}
}

// vmEntry is one VM of the lab; g is nil while it is being prepared.
type vmEntry struct {
	name, typ, rootfs, kernel, transport string
	mem, cpu, eths                       int
	dir                                  string
	mgmt                                 string // mgmt0's ADDR/LEN, "" for none
	mgmtIP                               string // the address add_vm named (--mgmt-ip), "" when derived
	g                                    machine.Guest
	ports                                []string // owned while non-nil
	deleting                             bool
	// vmlife.go: the kind and checked spec a stopped guest starts
	// again from; busy while a stop, start or save runs; keepPorts while
	// a stop keeps the ports and their lans.
	kind            machine.Kind
	spec            machine.Spec
	busy, keepPorts bool
	demo            string // the demo folder of add_vm
	// settled is closed once vmState has dealt with the running guest's
	// end (its ports freed or kept): its state reads crashed a moment
	// before, and a start in that moment must not race the freeing.
	settled chan struct{}
}

type vmTable struct {
	mu  sync.Mutex
	vms map[string]*vmEntry
	// kinds are the node kinds add_vm offers (kinds.All unless a test
	// set others).
	kinds *machine.Registry
	// boots queues the boots of kinds that ask for it (bootslots.go);
	// set once by NewWith.
	boots *bootSlots
}

func (d *Daemon) vmt() *vmTable { return &d.vmTab }

// registry is the table's node kinds (kinds.All by default).
func (t *vmTable) registry() *machine.Registry {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = kinds.All()
	}
	return t.kinds
}

// startGuest starts a checked guest of kind k; a kind whose boots are
// queued waits here for a slot (bootslots.go).
func (d *Daemon) startGuest(k machine.Kind, s machine.Spec, ev machine.Events) (machine.Guest, error) {
	return d.vmt().boots.start(k, d.quit, func() (machine.Guest, error) { return k.Start(s, ev) })
}

// vmMarker marks a directory of work_dir as a VM's, so a stale one may be
// cleared and anything else never is.
const vmMarker = ".cloonix-vm"

// reservedDirs are work_dir entries a VM may not be named after.
var reservedDirs = map[string]bool{"ports": true, "vde": true, "tux": true, "captures": true}

// vmRequest is add_vm's validated arguments.
type vmRequest struct {
	kind machine.Kind
	spec machine.Spec
	wait bool
	// stopped adds the guest without booting it (a stopped guest of a
	// topology file); keepDisk boots from the disk left in its directory
	// (resume after a crash of the switch).
	stopped, keepDisk bool
	demo              string
	mgmtIP            netip.Addr // --mgmt-ip, if given
}

// parseAddVM turns add_vm's arguments (already validated) into a spec
// its kind checks, without changing anything.
func (d *Daemon) parseAddVM(a *proto.AddVM) (*vmRequest, error) {
	name := a.Name
	if reservedDirs[name] {
		return nil, fmt.Errorf("vm name %q is reserved for the switch's own files in work_dir; choose another", name)
	}
	kind, err := d.vmt().registry().Lookup(a.Type)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %v", name, err)
	}
	r := &vmRequest{kind: kind, wait: a.Wait, stopped: a.State == "stopped", keepDisk: a.KeepDisk, demo: a.Demo}
	if r.mgmtIP, err = d.mgmtIP(name, a.MgmtIP); err != nil {
		return nil, err
	}
	s := &r.spec
	s.Name, s.Rootfs, s.KernelArg, s.Transport = name, a.Rootfs, a.Kernel, a.Transport
	s.Host = machine.Host{BulkDir: d.Cfg.BulkDir, WorkDir: d.Cfg.WorkDir, Accel: d.Cfg.Accel, OCIRuntime: d.Cfg.OCIRuntime}
	s.Mem, s.CPU, s.Eths = orUnset(a.Mem), orUnset(a.CPU), orUnset(a.Eth) // the kind sets defaults
	if a.BootTimeout != nil {
		s.BootTimeout = time.Duration(*a.BootTimeout) * time.Second
	}
	if err := d.demoCD(s, a.Demo); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(d.Cfg.RSAPublicKey); err == nil {
		s.CD.SSHKey = strings.TrimSpace(string(b))
	}
	if err := kind.Check(s); err != nil {
		return nil, err
	}
	return r, nil
}

// demoCD puts the demo folder's trees for this VM and its delete list on
// its config CD (the folder's layout is topology's). A demo reaches the
// switch from any client, so it is checked here with fconf's rules
// (demo_check.go), whatever the client checked.
func (d *Daemon) demoCD(s *machine.Spec, demo string) error {
	if demo == "" {
		return nil
	}
	trees, del, err := checkDemo(demo, s.Name)
	if err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	s.CD.Trees = append(s.CD.Trees, trees...)
	s.CD.DeleteCmds = del
	return nil
}

// orUnset is an optional number, or machine.Unset when not given.
func orUnset(v *int) int {
	if v == nil {
		return machine.Unset
	}
	return *v
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func (d *Daemon) addVM(c *client, a *proto.AddVM) (any, error) {
	r, err := d.parseAddVM(a)
	if err != nil {
		return nil, err
	}
	s := &r.spec
	name := s.Name
	t := d.vmt()
	t.mu.Lock()
	if _, ok := t.vms[name]; ok {
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %q already exists; delete it first (`cloonix ctrl del vm %s`) or choose another name", name, name)
	}
	held := map[string]bool{}
	for _, o := range t.vms {
		held[strings.Split(o.mgmt, "/")[0]] = true
	}
	if s.Mgmt, err = d.mgmtAssign(name, r.mgmtIP, s.MgmtSock != "", held); err != nil {
		t.mu.Unlock()
		return nil, err
	}
	s.CD.Mgmt = s.Mgmt
	var ports []string
	for i := range s.Ports() {
		p := fmt.Sprintf("%s:eth%d", name, i)
		if d.Fab.Port(p) != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("vm %s: port %s already exists", name, p)
		}
		ports = append(ports, p)
	}
	if _, ok := s.MgmtPort(); ok {
		ports = append(ports, name+mgmtPortTail) // its own suffix: no user port ends so
	}
	if fi, err := os.Lstat(s.Dir); err == nil {
		if !fi.IsDir() || !fileExists(filepath.Join(s.Dir, vmMarker)) {
			t.mu.Unlock()
			return nil, fmt.Errorf("vm %s: %s exists and is not a VM's directory; choose another name", name, s.Dir)
		}
	}
	e := &vmEntry{name: name, typ: s.Type, rootfs: s.Rootfs, kernel: s.KernelArg, transport: s.Transport,
		mem: s.Mem, cpu: s.CPU, eths: s.Eths, dir: s.Dir, kind: r.kind, spec: *s, demo: r.demo, mgmt: s.Mgmt, mgmtIP: a.MgmtIP}
	t.vms[name] = e
	t.mu.Unlock()

	g, err := d.launchVM(e, r, ports)
	if err != nil {
		t.mu.Lock()
		delete(t.vms, name)
		t.mu.Unlock()
		return nil, err
	}
	ev := []string{"name", name, "type", s.Type, "pid", strconv.Itoa(g.Pid())}
	if a := g.Accelerator(); a != "" {
		ev = append(ev, "accel", a)
	}
	d.Emit("vm_added", ev...)
	if r.wait && !r.stopped {
		timeout := s.BootTimeout
		if timeout <= 0 {
			timeout = g.DefaultBootTimeout()
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		st, det := g.WaitSettled(ctx)
		cancel()
		if st != machine.Running {
			if st == machine.Booting {
				det = fmt.Sprintf("no answer from its agent after %v", timeout)
				if a, ok := g.(interface{ AgentDiag() string }); ok {
					det += "; " + a.AgentDiag()
				}
			}
			return nil, fmt.Errorf("vm %s is %s (%s); its console is logged in %s; `cloonix ctrl del vm %s` removes it", name, st, det, g.ConsoleLog(), name)
		}
	}
	st, _ := g.State()
	return &proto.VMReply{Name: name, Pid: g.Pid(), State: st, Accel: g.Accelerator()}, nil
}

// launchVM makes the directory, ports and guest; on error it undoes
// what it made.
func (d *Daemon) launchVM(e *vmEntry, r *vmRequest, ports []string) (g machine.Guest, err error) {
	s := &r.spec
	if r.keepDisk && dirExists(s.Dir) {
		s.KeepDisk = true
		e.spec.KeepDisk = true
	} else {
		_ = os.RemoveAll(s.Dir) // a stale directory of a VM of that name (checked above)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("vm %s: %v", s.Name, err)
	}
	made := []string{}
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = d.DelPort(p)
			}
			if !s.KeepDisk {
				_ = os.RemoveAll(s.Dir)
			}
		}
	}()
	if err = os.WriteFile(filepath.Join(s.Dir, vmMarker), []byte(s.Name+"\n"), 0o644); err != nil {
		return nil, err
	}
	for i, pp := range s.Ports() {
		if _, _, err = d.AddPort(ports[i], pp.Kind, pp.Path, ""); err != nil {
			return nil, err
		}
		made = append(made, ports[i])
	}
	if mp, ok := s.MgmtPort(); ok {
		p := ports[len(ports)-1]
		if _, _, err = d.AddPort(p, mp.Kind, mp.Path, ""); err != nil {
			return nil, err
		}
		made = append(made, p)
		if err = d.Fab.Attach(p, mgmtLan); err != nil {
			return nil, fmt.Errorf("vm %s: management port: %v", s.Name, err)
		}
	}
	t := d.vmt()
	t.mu.Lock()
	e.ports = ports
	if !r.stopped {
		e.settled = make(chan struct{})
	}
	t.mu.Unlock()
	if r.stopped {
		g = newStoppedGuest(*s) // vmlife.go: `start vm` boots it
	} else {
		g, err = d.startGuest(r.kind, *s, d.vmEvents(e))
	}
	if err != nil {
		t.mu.Lock()
		e.ports = nil
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %s: %v", s.Name, err)
	}
	t.mu.Lock()
	e.g = g
	t.mu.Unlock()
	st, _ := g.State()
	d.Emit("vm_state", "name", s.Name, "state", st)
	return g, nil
}

// vmEvents reports a guest's states and boot timeout.
func (d *Daemon) vmEvents(e *vmEntry) machine.Events {
	return machine.Events{
		State: func(_ machine.Guest, state, detail string) { d.vmState(e, state, detail) },
		BootTimeout: func(_ machine.Guest, after time.Duration) {
			d.Emit("vm_boot_timeout", "name", e.name, "after", after.String(), "console", e.spec.ConsoleLog())
		},
	}
}

// vmState reports a machine's new state; a guest that died on its own
// frees its ports at once (the lab goes on without it).
func (d *Daemon) vmState(e *vmEntry, state, detail string) {
	kv := []string{"name", e.name, "state", state}
	if detail != "" {
		kv = append(kv, "detail", detail)
	}
	if state == machine.Stopped || state == machine.Crashed {
		t := d.vmt()
		t.mu.Lock()
		var ports []string
		if !e.deleting && !e.keepPorts {
			ports, e.ports = e.ports, nil
		}
		t.mu.Unlock()
		for _, p := range ports {
			_ = d.DelPort(p)
		}
		t.mu.Lock()
		if e.settled != nil {
			close(e.settled)
			e.settled = nil
		}
		t.mu.Unlock()
	}
	d.Emit("vm_state", kv...)
	d.journalChanged()
}

func (d *Daemon) delVM(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	t := d.vmt()
	t.mu.Lock()
	e, ok := t.vms[name]
	if !ok {
		names := vmNames(t)
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %q: no such vm (vms: %s)", name, names)
	}
	if e.g == nil || e.deleting || e.busy {
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %q is being created, deleted, stopped, started or saved; try again in a moment", name)
	}
	e.deleting = true
	t.mu.Unlock()
	d.removeVM(e)
	return nil, nil
}

// removeVM stops a VM, frees its ports and files and forgets it.
func (d *Daemon) removeVM(e *vmEntry) {
	e.g.Stop()
	t := d.vmt()
	t.mu.Lock()
	ports := e.ports
	e.ports = nil
	t.mu.Unlock()
	for _, p := range ports {
		_ = d.DelPort(p)
	}
	_ = os.RemoveAll(e.dir)
	t.mu.Lock()
	delete(t.vms, e.name)
	t.mu.Unlock()
	d.Emit("vm_deleted", "name", e.name)
}

func vmNames(t *vmTable) string {
	var n []string
	for k := range t.vms {
		n = append(n, k)
	}
	if len(n) == 0 {
		return "none"
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// stopAllVMs runs at shutdown: every guest is stopped, in parallel.
func (d *Daemon) stopAllVMs() {
	t := d.vmt()
	t.mu.Lock()
	var all []*vmEntry
	for _, e := range t.vms {
		if e.g != nil && !e.deleting {
			e.deleting = true
			all = append(all, e)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.removeVM(e)
		}()
	}
	wg.Wait()
}

func (d *Daemon) lookupVM(name string) (machine.Guest, error) {
	t := d.vmt()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.vms[name]
	if !ok {
		return nil, fmt.Errorf("vm %q: no such vm (vms: %s)", name, vmNames(t))
	}
	if e.g == nil {
		return nil, fmt.Errorf("vm %q is being created; try again in a moment", name)
	}
	return e.g, nil
}

// maxExecOutput bounds each stream in a reply, well under MaxMessage
// once base64-encoded.
const maxExecOutput = 1 << 20

func (d *Daemon) execVM(c *client, a *proto.Exec) (any, error) {
	name := a.Name
	stdin, err := a.StdinBytes()
	if err != nil {
		return nil, err
	}
	timeout := 0
	if a.Timeout != nil {
		timeout = *a.Timeout
	}
	mach, err := d.lookupVM(name)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
	} else {
		// A booting guest is waited for, but not for ever.
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	if st, _ := mach.State(); st == machine.Booting && timeout == 0 {
		if err := mach.AwaitAgent(ctx, mach.DefaultBootTimeout()); err != nil {
			return nil, err
		}
	}
	stdout, stderr, code, err := mach.Exec(ctx, a.Args, stdin)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %v", name, err)
	}
	rep := &proto.ExecReply{Code: code}
	if len(stdout) > maxExecOutput || len(stderr) > maxExecOutput {
		rep.Truncated = true
		stdout, stderr = stdout[:min(len(stdout), maxExecOutput)], stderr[:min(len(stderr), maxExecOutput)]
	}
	rep.Stdout, rep.Stderr = base64.StdEncoding.EncodeToString(stdout), base64.StdEncoding.EncodeToString(stderr)
	return rep, nil
}

func (d *Daemon) consoleVM(c *client, a *proto.Console) (any, error) {
	name := a.Name
	mach, err := d.lookupVM(name)
	if err != nil {
		return nil, err
	}
	if st, det := mach.State(); st == machine.Stopped || st == machine.Crashed {
		return nil, fmt.Errorf("vm %s is %s (%s): no console; its last output is in %s", name, st, det, mach.ConsoleLog())
	}
	return &proto.ConsoleReply{Name: name, Path: mach.ConsolePath(), Log: mach.ConsoleLog()}, nil
}

func listVMs(d *Daemon, lab *proto.Lab) {
	t := d.vmt()
	t.mu.Lock()
	entries := make([]*vmEntry, 0, len(t.vms))
	for _, e := range t.vms {
		entries = append(entries, e)
	}
	t.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, e := range entries {
		v := proto.VM{Name: e.name, Type: e.typ, State: machine.Booting, Mem: e.mem, CPU: e.cpu,
			Rootfs: e.rootfs, Kernel: e.kernel, Transport: e.transport, Demo: e.demo, Mgmt: e.mgmt, MgmtIP: e.mgmtIP}
		if e.g != nil {
			v.State, _ = e.g.State()
			v.Pid = e.g.Pid()
			v.Accel = e.g.Accelerator()
			if v.State == machine.Stopped {
				v.Pid = 0 // its pid may be another process's by now
			}
		}
		for i := 0; i < e.eths; i++ {
			p := fmt.Sprintf("%s:eth%d", e.name, i)
			v.Eths = append(v.Eths, proto.Eth{Port: p, Lans: d.PortLans(p)})
		}
		lab.VMs = append(lab.VMs, v)
	}
}
