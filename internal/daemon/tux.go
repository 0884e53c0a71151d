package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
	"cloonix/internal/tux"
	"cloonix/internal/wire"
)

// Tux supervision: each tux is a helper process (`cloonix tux-helper
// KIND ...`, package tux) joined to its switch port by a socketpair with
// the stream framing. The switch relaunches a helper that dies (within a
// second) on a fresh socketpair, re-sends its forwards, and kills every
// helper when it stops; the kernel kills them too if the switch dies
// (Pdeathsig). Events: tux_added, tux_deleted, tux_started, tux_died,
// tux_relaunched, tux_link (t2t up/down), forward_added, forward_deleted.

func init() {
	register("add_tux", (*Daemon).addTux)
	register("del_tux", (*Daemon).delTux)
	register("forward_add", (*Daemon).forwardAdd)
	register("forward_del", (*Daemon).forwardDel)
	onList(listTux)
	onStart(startTux)
}

// DefaultNat is the slirp tux started with the switch unless <no_nat>.
const DefaultNat = "nat"

// relaunchDelay is the pause before relaunching a dead helper; later
// attempts (the helper keeps failing) wait relaunchRetry.
const (
	relaunchDelay = 50 * time.Millisecond
	relaunchRetry = time.Second
	helperStartup = 15 * time.Second
	helperCall    = 5 * time.Second
)

type tuxProc struct {
	d          *Daemon
	name, kind string
	args       []string // kind flags for the helper
	env        []string // extra environment (the t2t password)
	opts       []proto.Option
	port       *fabric.Port

	mu       sync.Mutex
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	pid      int
	restarts int
	state    string // starting, running, restarting, stopped
	link     string // last link event (t2t)
	info     map[string]string
	forwards []proto.Forward
	held     *os.File // tap: the interface's descriptor, kept across relaunches
	pending  map[int]chan tux.Reply
	nextID   int
	stopping bool
	exited   chan struct{}
}

// tuxes is the daemon's tux table; callers hold d.tuxMu.
func (d *Daemon) tuxes() map[string]*tuxProc { return d.tuxs }

func (d *Daemon) getTux(name string) *tuxProc {
	d.tuxMu.Lock()
	defer d.tuxMu.Unlock()
	return d.tuxes()[name]
}

func startTux(d *Daemon) {
	d.OnStop(func() { d.stopAllTux() })
	if d.Cfg.NoNat {
		return
	}
	if err := d.AddTux(DefaultNat, "slirp", map[string]string{}); err != nil {
		log.Printf("default slirp %q not started: %v (set <no_nat>true</no_nat> to go without)", DefaultNat, err)
	}
}

func (d *Daemon) stopAllTux() {
	d.tuxMu.Lock()
	var all []*tuxProc
	for _, t := range d.tuxes() {
		all = append(all, t)
	}
	d.tuxs = map[string]*tuxProc{}
	d.tuxMu.Unlock()
	var wg sync.WaitGroup
	for _, t := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.stop()
		}()
	}
	wg.Wait()
}

func (d *Daemon) addTux(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	kind, err := need(m, "kind")
	if err != nil {
		return nil, err
	}
	opts := map[string]string{}
	for k, v := range m.Attrs {
		if k != "id" && k != "name" && k != "kind" {
			opts[k] = v
		}
	}
	if err := d.AddTux(name, kind, opts); err != nil {
		return nil, err
	}
	t := d.getTux(name)
	if t == nil {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return []byte(fmt.Sprintf(`<tux name="%s" kind="%s" pid="%d"/>`, xmlEscape(name), xmlEscape(kind), t.pid)), nil
}

// tuxKind describes one kind of tux for add_tux: the options it takes
// and how they become helper flags, environment and the options list
// shows. Other files add kinds with registerTuxKind.
type tuxKind struct {
	keys    []string
	options func(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error)
}

var tuxKinds = map[string]tuxKind{}

func registerTuxKind(kind string, keys []string, f func(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error)) {
	tuxKinds[kind] = tuxKind{keys: keys, options: f}
}

func init() {
	registerTuxKind("slirp", []string{"subnet"}, slirpOptions)
	registerTuxKind("tap", []string{"ifname"}, tapOptions)
	registerTuxKind("t2t", []string{"peer", "listen", "password"}, t2tOptions)
}

// tuxOptions checks a kind's options and turns them into helper flags,
// environment and the options shown by list.
func (d *Daemon) tuxOptions(name, kind string, o map[string]string) (args, env []string, shown []proto.Option, err error) {
	k, ok := tuxKinds[kind]
	if !ok {
		var kinds []string
		for x := range tuxKinds {
			kinds = append(kinds, x)
		}
		sort.Strings(kinds)
		return nil, nil, nil, fmt.Errorf("tux kind %q: use %s", kind, strings.Join(kinds, ", "))
	}
	for x := range o {
		if !contains(k.keys, x) {
			return nil, nil, nil, fmt.Errorf("tux kind %s takes no option %q (it takes: %s)", kind, x, strings.Join(k.keys, ", "))
		}
	}
	return k.options(d, name, o)
}

func slirpOptions(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error) {
	subnet := o["subnet"]
	if subnet == "" {
		subnet = tux.DefaultSubnet
	}
	plan, err := tux.PlanFor(subnet)
	if err != nil {
		return nil, nil, nil, err
	}
	args = []string{"--subnet", plan.Subnet.String(), "--state", filepath.Join(d.tuxDir(), name+".leases"),
		"--listeners", d.Cfg.ListenersDir(), "--host-ports", d.Cfg.SlirpHostPorts} // the gateway refuses the lab's own ports
	shown = []proto.Option{{Name: "subnet", Value: plan.Subnet.String()}, {Name: "gateway", Value: plan.Gateway.String()}, {Name: "dns", Value: plan.DNS.String()}}
	return args, nil, shown, nil
}

func tapOptions(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error) {
	ifname := o["ifname"]
	if ifname == "" {
		ifname = name
	}
	if err := tux.CheckIfName(ifname); err != nil {
		return nil, nil, nil, fmt.Errorf("tap %s: %v (set it with --ifname)", name, err)
	}
	if _, err := net.InterfaceByName(ifname); err == nil {
		return nil, nil, nil, fmt.Errorf("tap %s: interface %s already exists on this host; choose another with --ifname", name, ifname)
	}
	d.tuxMu.Lock()
	for _, t := range d.tuxes() {
		for _, op := range t.opts {
			if t.kind == "tap" && op.Name == "ifname" && op.Value == ifname {
				d.tuxMu.Unlock()
				return nil, nil, nil, fmt.Errorf("tap %s: interface %s belongs to tux %s (it may sit in another network namespace)", name, ifname, t.name)
			}
		}
	}
	d.tuxMu.Unlock()
	return []string{"--ifname", ifname}, nil, []proto.Option{{Name: "ifname", Value: ifname}}, nil
}

func t2tOptions(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error) {
	peer, listen := o["peer"], o["listen"]
	if (peer == "") == (listen == "") {
		return nil, nil, nil, fmt.Errorf("t2t %s needs exactly one of peer=HOST:PORT (dial) or listen=ADDR:PORT", name)
	}
	addr, flag := peer, "--peer"
	if listen != "" {
		addr, flag = listen, "--listen"
	}
	h, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 0 || n > 65535 || (peer != "" && (h == "" || n == 0)) {
		return nil, nil, nil, fmt.Errorf("t2t %s: address %q: want HOST:PORT", name, addr)
	}
	pw := o["password"]
	if pw == "" {
		pw = d.Cfg.Password
	}
	if pw == "" {
		return nil, nil, nil, fmt.Errorf("t2t %s needs a password: give --password or set <password> in the config", name)
	}
	return []string{flag, addr}, []string{tux.T2TPasswordEnv + "=" + pw}, []proto.Option{{Name: strings.TrimPrefix(flag, "--"), Value: addr}}, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (d *Daemon) tuxDir() string { return filepath.Join(d.Cfg.WorkDir, "tux") }

// AddTux starts a tux helper on a new port named after it. It checks
// everything first and leaves nothing behind when it fails.
func (d *Daemon) AddTux(name, kind string, o map[string]string) error {
	if err := proto.CheckName("tux", name); err != nil {
		return err
	}
	args, env, shown, err := d.tuxOptions(name, kind, o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.tuxDir(), 0o755); err != nil {
		return fmt.Errorf("work_dir: %v", err)
	}
	t := &tuxProc{d: d, name: name, kind: kind, args: args, env: env, opts: shown, state: "starting", info: map[string]string{}}
	d.tuxMu.Lock()
	if _, ok := d.tuxes()[name]; ok {
		d.tuxMu.Unlock()
		return fmt.Errorf("tux %q already exists (del tux %s first)", name, name)
	}
	if d.Fab.Port(name) != nil {
		d.tuxMu.Unlock()
		return fmt.Errorf("a port named %q already exists; choose another tux name", name)
	}
	p, err := d.Fab.AddPort(name, "tux")
	if err != nil {
		d.tuxMu.Unlock()
		return fmt.Errorf("a port named %q already exists; choose another tux name", name)
	}
	t.port = p
	d.tuxes()[name] = t
	d.tuxMu.Unlock()

	if kind == "slirp" {
		_ = os.Remove(filepath.Join(d.tuxDir(), name+".leases"))
	}
	if err := t.launch(true); err != nil {
		d.tuxMu.Lock()
		delete(d.tuxes(), name)
		d.tuxMu.Unlock()
		_ = d.Fab.DelPort(name)
		t.closeHeld()
		return fmt.Errorf("tux %s: %v", name, err)
	}
	d.Emit("port_added", "name", name, "kind", "tux")
	d.Emit("tux_added", "name", name, "kind", kind, "pid", strconv.Itoa(t.pid))
	return nil
}

func (d *Daemon) delTux(c *client, m *proto.Msg) ([]byte, error) {
	name, err := need(m, "name")
	if err != nil {
		return nil, err
	}
	return nil, d.DelTux(name)
}

// DelTux stops a tux's helper and removes its port.
func (d *Daemon) DelTux(name string) error {
	d.tuxMu.Lock()
	t, ok := d.tuxes()[name]
	if ok {
		delete(d.tuxes(), name)
	}
	d.tuxMu.Unlock()
	if !ok {
		return fmt.Errorf("tux %q: no such tux (see `cloonix ctrl list`)", name)
	}
	t.stop()
	if t.kind == "slirp" {
		_ = os.Remove(filepath.Join(d.tuxDir(), name+".leases"))
	}
	if err := d.DelPort(name); err != nil {
		log.Printf("tux %s: %v", name, err)
	}
	d.Emit("tux_deleted", "name", name)
	return nil
}

// spawn runs cmd.Start on one thread that lives as long as the switch:
// Pdeathsig fires when the thread that forked the child ends, so it must
// never be a thread the Go runtime might retire.
var spawnCh = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
}()

func spawn(cmd *exec.Cmd) error {
	done := make(chan error)
	spawnCh <- func() { done <- cmd.Start() }
	return <-done
}

// launch starts the helper and plugs it into the port. first is the
// add_tux launch (a t2t dialer then refuses a peer that answers wrongly).
func (t *tuxProc) launch(first bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1<<20)
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1<<20)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "switch"), os.NewFile(uintptr(fds[1]), "helper")
	defer theirs.Close()
	args := append([]string{"tux-helper", t.kind}, t.args...)
	files := []*os.File{theirs}
	t.mu.Lock()
	if t.held != nil {
		args = append(args, "--held")
		files = append(files, t.held)
	}
	t.mu.Unlock()
	if first && t.kind == "t2t" {
		args = append(args, "--strict")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(append(os.Environ(), t.env...), "GOMAXPROCS=1")
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logPath := filepath.Join(t.d.tuxDir(), t.name+".log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		mine.Close()
		return err
	}
	defer lf.Close()
	cmd.Stderr = lf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		mine.Close()
		return err
	}
	// Our own pipe, not StdoutPipe: Wait (which runs at once, below)
	// would close that one and lose the helper's last words.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		mine.Close()
		return err
	}
	cmd.Stdout = stdoutW
	err = spawn(cmd)
	stdoutW.Close()
	if err != nil {
		stdout.Close()
		mine.Close()
		return fmt.Errorf("starting its helper: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		<-exited
		mine.Close()
		stdout.Close()
		return err
	}
	// The first line says whether the helper could set itself up.
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	first1 := make(chan *tux.Reply, 1)
	go func() {
		if !lines.Scan() {
			first1 <- nil
			return
		}
		var r tux.Reply
		if json.Unmarshal(lines.Bytes(), &r) != nil {
			r.Error = "helper said: " + lines.Text()
		}
		first1 <- &r
	}()
	var r *tux.Reply
	select {
	case r = <-first1:
	case <-time.After(helperStartup):
		return fail(fmt.Errorf("its helper did not start within %v (see %s)", helperStartup, logPath))
	}
	if r == nil {
		<-exited
		mine.Close()
		stdout.Close()
		return fmt.Errorf("its helper exited at start (%v); see %s", waitErr, logPath)
	}
	if r.Error != "" {
		return fail(errors.New(r.Error))
	}
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return fail(err)
	}
	var fc fabric.Conn = wire.NewStreamConn(conn)
	if t.kind == "tap" {
		f, err := recvFD(conn.(*net.UnixConn))
		if err != nil {
			conn.Close()
			return fail(fmt.Errorf("receiving the tap from its helper: %v", err))
		}
		t.mu.Lock()
		if t.held != nil {
			t.held.Close()
		}
		t.held = f
		t.mu.Unlock()
		fc = newOffloadConn(conn)
	}
	if t.kind == "t2t" || t.kind == "vxlan" {
		// The other switch cuts super frames for its own guests, so
		// they may cross the link whole (a vxlan helper cuts them into
		// standard frames itself, then sends them with UDP GSO).
		fc = newOffloadConn(conn)
	}
	t.mu.Lock()
	if t.stopping {
		// del_tux or stop came while this helper was starting.
		t.mu.Unlock()
		fc.Close()
		return fail(fmt.Errorf("tux %s was deleted while its helper started", t.name))
	}
	t.cmd, t.stdin, t.pid, t.state, t.exited = cmd, stdin, cmd.Process.Pid, "running", exited
	t.pending = map[int]chan tux.Reply{}
	for k, v := range r.Info {
		t.info[k] = v
	}
	if l := r.Info["listen"]; l != "" {
		// A t2t listener on port 0 keeps the port it got, so the peer
		// finds it again after a relaunch.
		for i := 0; i+1 < len(t.args); i++ {
			if t.args[i] == "--listen" {
				t.args[i+1] = l
			}
		}
	}
	t.mu.Unlock()
	t.port.SetConn(fc)
	go func() {
		t.readReplies(lines)
		stdout.Close()
	}()
	go t.watch(cmd, exited, &waitErr)
	t.d.Emit("tux_started", "name", t.name, "kind", t.kind, "pid", strconv.Itoa(cmd.Process.Pid))
	return nil
}

// recvFD reads the one byte 'T' that carries the tap's descriptor.
func recvFD(c *net.UnixConn) (*os.File, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, 1)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if err != nil {
		return nil, err
	}
	if n != 1 || b[0] != 'T' {
		return nil, errors.New("unexpected first byte")
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("no descriptor")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("no descriptor")
	}
	syscall.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "tap"), nil
}

// readReplies dispatches the helper's lines: answers and events.
func (t *tuxProc) readReplies(lines *bufio.Scanner) {
	for lines.Scan() {
		var r tux.Reply
		if json.Unmarshal(lines.Bytes(), &r) != nil {
			continue
		}
		if r.Event != "" {
			state, detail, _ := strings.Cut(r.Event, " ")
			t.mu.Lock()
			t.link = state
			t.mu.Unlock()
			t.d.Emit("tux_link", "name", t.name, "state", state, "detail", detail)
			continue
		}
		t.mu.Lock()
		ch := t.pending[r.ID]
		delete(t.pending, r.ID)
		t.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// watch waits for the helper's end and relaunches it unless stopping.
func (t *tuxProc) watch(cmd *exec.Cmd, exited chan struct{}, waitErr *error) {
	<-exited
	t.mu.Lock()
	for id, ch := range t.pending {
		close(ch)
		delete(t.pending, id)
	}
	if t.stopping || t.cmd != cmd {
		t.mu.Unlock()
		return
	}
	t.state = "restarting"
	pid := t.pid
	t.mu.Unlock()
	status := "exited"
	if *waitErr != nil {
		status = (*waitErr).Error()
	}
	log.Printf("tux %s: helper %d died (%s); relaunching", t.name, pid, status)
	t.d.Emit("tux_died", "name", t.name, "pid", strconv.Itoa(pid), "status", status)
	delay := relaunchDelay
	for {
		time.Sleep(delay)
		t.mu.Lock()
		stopping := t.stopping
		t.mu.Unlock()
		if stopping {
			return
		}
		err := t.launch(false)
		if err == nil {
			break
		}
		log.Printf("tux %s: relaunch failed: %v", t.name, err)
		t.d.Emit("tux_relaunch_failed", "name", t.name, "error", err.Error())
		delay = relaunchRetry
	}
	t.mu.Lock()
	t.restarts++
	n, fw := t.restarts, append([]proto.Forward(nil), t.forwards...)
	newPid := t.pid
	t.mu.Unlock()
	for _, f := range fw {
		if _, err := t.call(tux.Request{Op: "forward_add", Proto: f.Proto, Host: f.Host, Guest: f.Guest}); err != nil {
			log.Printf("tux %s: forward %s %s again: %v", t.name, f.Proto, f.Host, err)
			t.d.Emit("forward_failed", "name", t.name, "proto", f.Proto, "host", f.Host, "error", err.Error())
		}
	}
	t.d.Emit("tux_relaunched", "name", t.name, "pid", strconv.Itoa(newPid), "restarts", strconv.Itoa(n))
}

// call sends one request to the helper and waits for its answer.
func (t *tuxProc) call(req tux.Request) (tux.Reply, error) {
	return t.callTimeout(req, helperCall)
}

func (t *tuxProc) callTimeout(req tux.Request, d time.Duration) (tux.Reply, error) {
	t.mu.Lock()
	if t.stdin == nil || t.state != "running" {
		t.mu.Unlock()
		return tux.Reply{}, fmt.Errorf("tux %s is %s; try again in a moment", t.name, t.state)
	}
	t.nextID++
	req.ID = t.nextID
	ch := make(chan tux.Reply, 1)
	t.pending[req.ID] = ch
	b, _ := json.Marshal(req)
	_, err := t.stdin.Write(append(b, '\n'))
	t.mu.Unlock()
	if err != nil {
		return tux.Reply{}, fmt.Errorf("tux %s: its helper is gone", t.name)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return tux.Reply{}, fmt.Errorf("tux %s: its helper died; try again in a moment", t.name)
		}
		if r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, nil
	case <-time.After(d):
		t.mu.Lock()
		delete(t.pending, req.ID)
		t.mu.Unlock()
		return tux.Reply{}, fmt.Errorf("tux %s: its helper did not answer within %v", t.name, d)
	}
}

// stop ends the helper for good: stdin closes (it exits), then a kill
// if it lingers.
func (t *tuxProc) stop() {
	t.mu.Lock()
	t.stopping = true
	t.state = "stopped"
	cmd, stdin, exited := t.cmd, t.stdin, t.exited
	t.mu.Unlock()
	if cmd != nil {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.closeHeld()
}

func (t *tuxProc) closeHeld() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held != nil {
		t.held.Close()
		t.held = nil
	}
}

func (d *Daemon) forwardArgs(m *proto.Msg, needGuest bool) (*tuxProc, proto.Forward, error) {
	var f proto.Forward
	name, err := need(m, "name")
	if err != nil {
		return nil, f, err
	}
	f.Proto, f.Host, f.Guest = m.Get("proto"), m.Get("host"), m.Get("guest")
	if f.Proto == "" {
		f.Proto = "tcp"
	}
	if needGuest && f.Guest == "" {
		return nil, f, fmt.Errorf("<%s> needs guest=\"GUESTIP:PORT\"", m.Name)
	}
	if err := tux.CheckForward(f.Proto, f.Host, f.Guest); err != nil {
		return nil, f, err
	}
	t := d.getTux(name)
	if t == nil {
		return nil, f, fmt.Errorf("tux %q: no such tux (see `cloonix ctrl list`)", name)
	}
	if t.kind != "slirp" {
		return nil, f, fmt.Errorf("tux %s is a %s; forwards belong to slirp tux", name, t.kind)
	}
	return t, f, nil
}

func (d *Daemon) forwardAdd(c *client, m *proto.Msg) ([]byte, error) {
	t, f, err := d.forwardArgs(m, true)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	for _, x := range t.forwards {
		if x.Proto == f.Proto && x.Host == f.Host {
			t.mu.Unlock()
			return nil, fmt.Errorf("forward %s %s already exists on %s (to %s); delete it first", f.Proto, f.Host, t.name, x.Guest)
		}
	}
	t.mu.Unlock()
	if _, err := t.call(tux.Request{Op: "forward_add", Proto: f.Proto, Host: f.Host, Guest: f.Guest}); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.forwards = append(t.forwards, f)
	t.mu.Unlock()
	d.Emit("forward_added", "name", t.name, "proto", f.Proto, "host", f.Host, "guest", f.Guest)
	return nil, nil
}

func (d *Daemon) forwardDel(c *client, m *proto.Msg) ([]byte, error) {
	t, f, err := d.forwardArgs(m, false)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	idx := -1
	for i, x := range t.forwards {
		if x.Proto == f.Proto && x.Host == f.Host {
			idx = i
		}
	}
	t.mu.Unlock()
	if idx < 0 {
		return nil, fmt.Errorf("forward %s %s: no such forward on %s", f.Proto, f.Host, t.name)
	}
	if _, err := t.call(tux.Request{Op: "forward_del", Proto: f.Proto, Host: f.Host}); err != nil {
		return nil, err
	}
	t.mu.Lock()
	for i, x := range t.forwards {
		if x.Proto == f.Proto && x.Host == f.Host {
			t.forwards = append(t.forwards[:i:i], t.forwards[i+1:]...)
			break
		}
	}
	t.mu.Unlock()
	d.Emit("forward_deleted", "name", t.name, "proto", f.Proto, "host", f.Host)
	return nil, nil
}

// listTux adds each tux, with its helper's counters, to list.
func listTux(d *Daemon, lab *proto.Lab) {
	d.tuxMu.Lock()
	var all []*tuxProc
	for _, t := range d.tuxes() {
		all = append(all, t)
	}
	d.tuxMu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	stats := make([]*tux.Stats, len(all))
	var wg sync.WaitGroup
	for i, t := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := t.callTimeout(tux.Request{Op: "stats"}, 500*time.Millisecond); err == nil {
				stats[i] = r.Stats
			}
		}()
	}
	wg.Wait()
	for i, t := range all {
		t.mu.Lock()
		x := proto.Tux{Name: t.name, Kind: t.kind, State: t.state, Pid: t.pid, Restarts: t.restarts,
			Lans: d.PortLans(t.name), Forwards: append([]proto.Forward{}, t.forwards...)}
		// What the helper reports (e.g. the port a listen on :0 got) wins.
		for _, o := range t.opts {
			if _, ok := t.info[o.Name]; !ok {
				x.Options = append(x.Options, o)
			}
		}
		for _, k := range sortedKeys(t.info) {
			x.Options = append(x.Options, proto.Option{Name: k, Value: t.info[k]})
		}
		if s := stats[i]; s != nil {
			x.Counters = proto.Counters{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes, Drops: s.Drops}
			x.Options = append(x.Options, proto.Option{Name: "link", Value: s.State})
		}
		t.mu.Unlock()
		lab.Tux = append(lab.Tux, x)
	}
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
