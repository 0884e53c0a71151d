package daemon

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/guest"
	"cloonix/internal/machine"
	"cloonix/internal/proto"
	"cloonix/internal/wire"
)

// Machines (DESIGN sections 3 and 6): add_vm, del_vm, exec, console.
// Each VM keeps its files in work_dir/NAME and its ports NAME:ethN.

func vmsFeature() Feature {
	return Feature{Name: "vms",
		Verbs: []Verb{
			checked[proto.AddVM]((*Daemon).addVM), checked[proto.DelVM]((*Daemon).delVM),
			checked[proto.Exec]((*Daemon).execVM), checked[proto.Console]((*Daemon).consoleVM),
		},
		Listen: map[string]func(path string) (fabric.Listener, error){
			"bess":   func(path string) (fabric.Listener, error) { return wire.ListenBess(path) },
			"daemon": func(path string) (fabric.Listener, error) { return wire.ListenDaemon(path) },
		},
		List:  listVMs,
		Start: func(d *Daemon) { d.OnStop(d.stopAllVMs) },
	}
}

// vmEntry is one VM of the lab; m is nil while it is being prepared.
type vmEntry struct {
	name, typ, rootfs, kernel, transport, accel string
	mem, cpu, eths                              int
	dir                                         string
	m                                           *machine.Machine
	ports                                       []string // owned while non-nil
	deleting                                    bool
}

type vmTable struct {
	mu  sync.Mutex
	vms map[string]*vmEntry
}

func (d *Daemon) vmt() *vmTable { return &d.vmTab }

// Limits of add_vm.
const (
	minMem  = proto.MinMem
	maxEths = proto.MaxEths
	// vmMarker marks a directory of work_dir as a VM's, so a stale one
	// may be cleared and anything else never is.
	vmMarker = ".cloonix-vm"
)

// reservedDirs are work_dir entries a VM may not be named after.
var reservedDirs = map[string]bool{"ports": true, "vde": true, "tux": true, "captures": true}

func hostMemMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 65536
}

// vmRequest is add_vm's validated arguments.
type vmRequest struct {
	spec     machine.Spec
	rootfs   string
	kernel   string
	wait     bool
	demo     string
	portKind string
}

// parseAddVM validates everything add_vm needs without changing anything.
func (d *Daemon) parseAddVM(m *proto.Msg) (*vmRequest, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	if err := proto.CheckName("vm", name); err != nil {
		return nil, err
	}
	if reservedDirs[name] {
		return nil, fmt.Errorf("vm name %q is reserved for the switch's own files in work_dir; choose another", name)
	}
	typ := strings.ToLower(strings.TrimSpace(m.Get("type")))
	switch typ {
	case "", "kvm", "qemu":
		typ = machine.KVM
	case "uml":
	default:
		return nil, fmt.Errorf("vm %s: type %q: use kvm or uml", name, m.Get("type"))
	}
	maxMem := hostMemMB()
	mem, err := intArg(m, "mem", 256, minMem, maxMem)
	if err != nil {
		return nil, fmt.Errorf("vm %s: memory %s MB is out of range: give --mem from %d to %d (this host's memory)", name, m.Get("mem"), minMem, maxMem)
	}
	cpu, err := intArg(m, "cpu", 1, 1, 64)
	if err != nil {
		return nil, err
	}
	if typ == machine.UML && cpu != 1 {
		return nil, fmt.Errorf("vm %s: UML guests have one CPU; drop --cpu or use --type kvm", name)
	}
	eths, err := intArg(m, "eth", 1, 0, maxEths)
	if err != nil {
		return nil, err
	}
	transport := strings.ToLower(m.Get("transport"))
	if typ == machine.UML {
		if transport == "" {
			transport = "bess"
		}
		if transport != "bess" && transport != "daemon" {
			return nil, fmt.Errorf("vm %s: UML transport %q: use bess or daemon", name, transport)
		}
	} else if transport != "" {
		return nil, fmt.Errorf("vm %s: --uml-transport is for UML guests only", name)
	}
	bootTimeout, err := intArg(m, "boot_timeout", 0, 1, 24*3600)
	if err != nil {
		return nil, err
	}
	rootfs := m.Get("rootfs")
	if rootfs == "" {
		rootfs = "busybox"
	}
	img, err := machine.ResolveImage(d.Cfg.BulkDir, rootfs)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %v", name, err)
	}
	r := &vmRequest{rootfs: rootfs, wait: m.Get("wait") == "true", portKind: "stream"}
	s := &r.spec
	s.Name, s.Type, s.Mem, s.CPU, s.Image, s.Transport = name, typ, mem, cpu, img, transport
	s.BootTimeout = time.Duration(bootTimeout) * time.Second
	s.Dir = filepath.Join(d.Cfg.WorkDir, name)
	kernel := m.Get("kernel")
	r.kernel = kernel
	if typ == machine.UML {
		if img.Disk {
			return nil, fmt.Errorf("vm %s: %s is a bootable disk (partition table); UML needs a filesystem image such as busybox", name, img.Path)
		}
		if kernel == "" {
			if s.Kernel, err = machine.LookProgram("linux.uml"); err != nil {
				return nil, fmt.Errorf("vm %s: %v", name, err)
			}
			// `bulk build` leaves a copy patched for this host's FPU there.
			if p := filepath.Join(d.Cfg.BulkDir, "linux.uml"); fileExists(p) {
				s.Kernel = p
			} else {
				s.XstateFilter = machine.NeedXstateWorkaround()
			}
		} else if s.Kernel, err = kernelPath(d.Cfg.BulkDir, kernel); err != nil {
			return nil, fmt.Errorf("vm %s: %v", name, err)
		}
		r.portKind = transport
		s.NoAVX = machine.NeedXstateWorkaround()
		if kernel != "" {
			s.XstateFilter = s.NoAVX
		}
	} else {
		if s.QEMU, err = machine.LookProgram("qemu-system-x86_64"); err != nil {
			return nil, fmt.Errorf("vm %s: %v", name, err)
		}
		if s.QemuImg, err = machine.LookProgram("qemu-img"); err != nil {
			return nil, fmt.Errorf("vm %s: %v", name, err)
		}
		if !img.Disk {
			if kernel == "" {
				kernel = "vmlinuz"
			}
			if s.Kernel, err = kernelPath(d.Cfg.BulkDir, kernel); err != nil {
				return nil, fmt.Errorf("vm %s: %v (a bare filesystem image boots with the bulk kernel: `cloonix bulk build`)", name, err)
			}
			// The bulk kernel's initrd loads the disk modules.
			if ini := filepath.Join(filepath.Dir(s.Kernel), "initrd.img"); filepath.Base(s.Kernel) == "vmlinuz" && fileExists(ini) {
				s.Initrd = ini
			}
		}
	}
	// Unix socket paths are limited to 108 bytes; the longest we make is
	// a daemon transport's data socket, ethNN.ctl.dNNNNN.
	if len(s.Dir)+len("/eth31.ctl.d99999") >= 108 {
		return nil, fmt.Errorf("vm %s: its sockets under %s would pass the 108-byte limit of unix socket paths; use a shorter name or work_dir", name, s.Dir)
	}
	if demo := m.Get("demo"); demo != "" {
		if !filepath.IsAbs(demo) {
			return nil, fmt.Errorf("vm %s: demo folder %q must be an absolute path", name, demo)
		}
		if fi, err := os.Stat(demo); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("vm %s: demo folder %s is not a directory", name, demo)
		}
		r.demo = demo
	}
	s.CD = guest.CDSpec{Name: name, Eths: eths}
	if r.demo != "" {
		for _, t := range []string{"files_to_add_in_all_targets", "files_to_add_in_" + name} {
			if p := filepath.Join(r.demo, t); dirExists(p) {
				s.CD.Trees = append(s.CD.Trees, p)
			}
		}
		if b, err := os.ReadFile(filepath.Join(r.demo, "files_to_delete_from_all_targets")); err == nil {
			s.CD.DeleteCmds = string(b)
		}
	}
	if b, err := os.ReadFile(d.Cfg.RSAPublicKey); err == nil {
		s.CD.SSHKey = strings.TrimSpace(string(b))
	}
	for i := 0; i < eths; i++ {
		sock := filepath.Join(s.Dir, fmt.Sprintf("eth%d.sock", i))
		if r.portKind == "daemon" {
			sock = filepath.Join(s.Dir, fmt.Sprintf("eth%d.ctl", i))
		}
		s.EthSocks = append(s.EthSocks, sock)
	}
	return r, nil
}

// kernelPath resolves --kernel: an absolute path or a file of bulk_dir.
func kernelPath(bulkDir, k string) (string, error) {
	p := k
	if !strings.Contains(k, "/") {
		if err := proto.CheckName("kernel", k); err != nil {
			return "", err
		}
		p = filepath.Join(bulkDir, k)
	} else if !filepath.IsAbs(k) {
		return "", fmt.Errorf("kernel %q: give a file name of bulk_dir or an absolute path", k)
	}
	if !fileExists(p) {
		return "", fmt.Errorf("kernel %s not found", p)
	}
	return p, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func (d *Daemon) addVM(c *client, m *proto.Msg) ([]byte, error) {
	r, err := d.parseAddVM(m)
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
	var ports []string
	for i := range s.EthSocks {
		p := fmt.Sprintf("%s:eth%d", name, i)
		if d.Fab.Port(p) != nil {
			t.mu.Unlock()
			return nil, fmt.Errorf("vm %s: port %s already exists", name, p)
		}
		ports = append(ports, p)
	}
	if fi, err := os.Lstat(s.Dir); err == nil {
		if !fi.IsDir() || !fileExists(filepath.Join(s.Dir, vmMarker)) {
			t.mu.Unlock()
			return nil, fmt.Errorf("vm %s: %s exists and is not a VM's directory; choose another name", name, s.Dir)
		}
	}
	e := &vmEntry{name: name, typ: s.Type, rootfs: r.rootfs, kernel: r.kernel, transport: s.Transport,
		mem: s.Mem, cpu: s.CPU, eths: len(s.EthSocks), dir: s.Dir}
	t.vms[name] = e
	t.mu.Unlock()

	mach, err := d.launchVM(e, r, ports)
	if err != nil {
		t.mu.Lock()
		delete(t.vms, name)
		t.mu.Unlock()
		return nil, err
	}
	ev := []string{"name", name, "type", s.Type, "pid", strconv.Itoa(mach.Pid())}
	if e.accel != "" {
		ev = append(ev, "accel", e.accel)
	}
	d.Emit("vm_added", ev...)
	if r.wait {
		timeout := s.BootTimeout
		if timeout <= 0 {
			timeout = machine.DefaultBootTimeout(s.Type, s.Accel)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		st, det := mach.WaitSettled(ctx)
		cancel()
		if st != machine.Running {
			if st == machine.Booting {
				det = fmt.Sprintf("no answer from its agent after %v", timeout)
			}
			return nil, fmt.Errorf("vm %s is %s (%s); its console is logged in %s; `cloonix ctrl del vm %s` removes it", name, st, det, s.ConsoleLog(), name)
		}
	}
	st, _ := mach.State()
	return []byte(fmt.Sprintf(`<vm name="%s" pid="%d" state="%s" accel="%s"/>`, xmlEscape(name), mach.Pid(), st, e.accel)), nil
}

// launchVM makes the directory, ports and machine; on error it undoes
// what it made.
func (d *Daemon) launchVM(e *vmEntry, r *vmRequest, ports []string) (mach *machine.Machine, err error) {
	s := &r.spec
	if s.Type == machine.KVM {
		if s.Accel, err = machine.ResolveAccel(d.Cfg.Accel, s.QEMU, machine.ProbeKernel(d.Cfg.BulkDir), d.Cfg.WorkDir); err != nil {
			return nil, err
		}
		e.accel = s.Accel
	}
	_ = os.RemoveAll(s.Dir) // a stale directory of a VM of that name (checked above)
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("vm %s: %v", s.Name, err)
	}
	made := []string{}
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = d.DelPort(p)
			}
			_ = os.RemoveAll(s.Dir)
		}
	}()
	if err = os.WriteFile(filepath.Join(s.Dir, vmMarker), []byte(s.Name+"\n"), 0o644); err != nil {
		return nil, err
	}
	for i, p := range ports {
		if _, _, err = d.AddPort(p, r.portKind, s.EthSocks[i], ""); err != nil {
			return nil, err
		}
		made = append(made, p)
	}
	t := d.vmt()
	t.mu.Lock()
	e.ports = ports
	t.mu.Unlock()
	mach, err = machine.Start(*s, machine.Events{
		State: func(m *machine.Machine, state, detail string) { d.vmState(e, state, detail) },
		BootTimeout: func(m *machine.Machine, after time.Duration) {
			d.Emit("vm_boot_timeout", "name", s.Name, "after", after.String(), "console", s.ConsoleLog())
		},
	})
	if err != nil {
		t.mu.Lock()
		e.ports = nil
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %s: %v", s.Name, err)
	}
	t.mu.Lock()
	e.m = mach
	t.mu.Unlock()
	d.Emit("vm_state", "name", s.Name, "state", machine.Booting)
	return mach, nil
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
		if !e.deleting {
			ports, e.ports = e.ports, nil
		}
		t.mu.Unlock()
		for _, p := range ports {
			_ = d.DelPort(p)
		}
	}
	d.Emit("vm_state", kv...)
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
	if e.m == nil || e.deleting {
		t.mu.Unlock()
		return nil, fmt.Errorf("vm %q is being created or deleted; try again in a moment", name)
	}
	e.deleting = true
	t.mu.Unlock()
	d.removeVM(e)
	return nil, nil
}

// removeVM stops a VM, frees its ports and files and forgets it.
func (d *Daemon) removeVM(e *vmEntry) {
	e.m.Stop()
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
		if e.m != nil && !e.deleting {
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

func (d *Daemon) lookupVM(name string) (*machine.Machine, error) {
	t := d.vmt()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.vms[name]
	if !ok {
		return nil, fmt.Errorf("vm %q: no such vm (vms: %s)", name, vmNames(t))
	}
	if e.m == nil {
		return nil, fmt.Errorf("vm %q is being created; try again in a moment", name)
	}
	return e.m, nil
}

// execArgs is the inner XML of an exec request.
type execArgs struct {
	Args  []string `xml:"arg"`
	Stdin string   `xml:"stdin"`
}

// maxExecOutput bounds each stream in a reply, well under MaxMessage
// once base64-encoded.
const maxExecOutput = 1 << 20

func (d *Daemon) execVM(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	var a execArgs
	if err := xml.Unmarshal(append(append([]byte("<exec>"), m.Inner...), "</exec>"...), &a); err != nil {
		return nil, fmt.Errorf("<exec>: bad arguments: %v", err)
	}
	if len(a.Args) == 0 || a.Args[0] == "" {
		return nil, errors.New("<exec> needs the command as <arg> elements")
	}
	stdin, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Stdin))
	if err != nil {
		return nil, fmt.Errorf("<exec>: stdin is not base64: %v", err)
	}
	timeout, err := intArg(m, "timeout", 0, 0, 24*3600)
	if err != nil {
		return nil, err
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
		if err := mach.AwaitAgent(ctx, machine.DefaultBootTimeout(mach.Type, mach.Accel)); err != nil {
			return nil, err
		}
	}
	stdout, stderr, code, err := mach.Exec(ctx, a.Args, stdin)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %v", name, err)
	}
	trunc := ""
	if len(stdout) > maxExecOutput || len(stderr) > maxExecOutput {
		trunc = ` truncated="true"`
		stdout, stderr = stdout[:min(len(stdout), maxExecOutput)], stderr[:min(len(stderr), maxExecOutput)]
	}
	return []byte(fmt.Sprintf(`<exec code="%d"%s><stdout>%s</stdout><stderr>%s</stderr></exec>`, code, trunc,
		base64.StdEncoding.EncodeToString(stdout), base64.StdEncoding.EncodeToString(stderr))), nil
}

func (d *Daemon) consoleVM(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	mach, err := d.lookupVM(name)
	if err != nil {
		return nil, err
	}
	if st, det := mach.State(); st == machine.Stopped || st == machine.Crashed {
		return nil, fmt.Errorf("vm %s is %s (%s): no console; its last output is in %s", name, st, det, mach.ConsoleLog())
	}
	return []byte(fmt.Sprintf(`<console name="%s" path="%s" log="%s"/>`, xmlEscape(name), xmlEscape(mach.ConsolePath()), xmlEscape(mach.ConsoleLog()))), nil
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
		v := proto.VM{Name: e.name, Type: e.typ, State: machine.Booting, Accel: e.accel, Mem: e.mem, CPU: e.cpu,
			Rootfs: e.rootfs, Kernel: e.kernel, Transport: e.transport}
		if e.m != nil {
			v.State, _ = e.m.State()
			v.Pid = e.m.Pid()
		}
		for i := 0; i < e.eths; i++ {
			p := fmt.Sprintf("%s:eth%d", e.name, i)
			v.Eths = append(v.Eths, proto.Eth{Port: p, Lans: d.PortLans(p)})
		}
		lab.VMs = append(lab.VMs, v)
	}
}
