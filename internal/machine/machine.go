// Package machine runs guests (DESIGN sections 6-7). Each node kind
// (kind.go: the Kind and Guest interfaces and the registry) is one file:
// qemu.go and uml.go hold their checks, defaults, kernel, image and
// accelerator choice and command line. Machine (this file) supervises
// the emulator process both share: config CD, process, serial console,
// agent line, states. The daemon decides names and lans and keeps the
// table of guests; a guest reports its state changes through callbacks.
package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloonix/internal/guest"
)

// States a machine goes through (DESIGN section 3).
const (
	Booting = "booting"
	Running = "running" // the agent answered
	Stopped = "stopped"
	Crashed = "crashed"
)

// Types of machine.
const (
	KVM = "kvm" // QEMU, with KVM when it works, TCG otherwise
	UML = "uml"
)

// Spec is everything needed to launch one machine. The daemon fills in
// what add_vm asked; the kind's Check validates it and fills the rest.
type Spec struct {
	Name   string
	Type   string // the kind's name: KVM, UML...
	Mem    int    // MB; Unset: the kind's default
	CPU    int    // Unset: 1
	Eths   int    // Unset: 1
	Rootfs string // --rootfs as given; "": busybox
	// KernelArg is --kernel as given; Kernel is what Check made of it
	// (QEMU: kernel for a bare filesystem image; UML: the linux binary).
	KernelArg, Kernel string
	Transport         string // UML eths: bess or daemon
	Host              Host
	CD                guest.CDSpec // Check sets Name and Eths
	BootTimeout       time.Duration
	// KeepDisk starts from the disk a previous run left in Dir (ctrl
	// start vm, resume) instead of a fresh COW over the image.
	KeepDisk bool

	// Set by Check (and Accel by Start).
	Image  Image
	Initrd string // QEMU only, may be empty
	Accel  string // QEMU: kvm or tcg
	Dir    string // work_dir/NAME: COW, CD, sockets, logs
	// EthSocks are the switch's sockets for eth0, eth1, ..., all of the
	// switch's port kind PortKind: stream (QEMU), bess (UML seqpacket) or
	// daemon (uml_switch control).
	EthSocks []string
	PortKind string
	// Mgmt is mgmt0's "ADDR/LEN" on the management network, "" for none
	// (the daemon sets it); MgmtSock is its switch socket, of PortKind
	// (set by Check when Mgmt is).
	Mgmt, MgmtSock string
	QEMU           string // qemu-system-x86_64
	QemuImg        string // qemu-img
	// NoAVX (UML) keeps guest programs off AVX and XstateFilter starts
	// linux.uml under the XSTATE seccomp filter (umlexec.go).
	NoAVX, XstateFilter bool
}

// Events a machine reports. Both are called from the machine's own
// goroutines, never with its lock held.
type Events struct {
	// State reports each new state; detail says why (may be empty).
	State func(g Guest, state, detail string)
	// BootTimeout reports that the agent did not answer in time; the
	// machine keeps trying.
	BootTimeout func(g Guest, after time.Duration)
}

// Machine is one launched guest.
type Machine struct {
	Spec
	ev Events

	st       StateCell
	mu       sync.Mutex
	stopping bool
	ready    time.Duration // launch to agent ready

	cmd     *exec.Cmd
	pid     int
	started time.Time
	agent   *guest.Client
	agentOK chan struct{} // closed once agent is set
	console *Console
	closers []io.Closer
	ctx     context.Context
	cancel  context.CancelFunc
	exited  chan struct{}

	// QEMU only: its QMP socket (lifecycle.go) and the hard stop that
	// flushes its disk before it exits.
	qmpSock  string
	qmpMu    sync.Mutex
	hardStop func()
}

// Socket paths inside Dir.
func (s *Spec) path(name string) string { return filepath.Join(s.Dir, name) }

// OverlayPath is the COW disk.
func (s *Spec) OverlayPath() string {
	if s.Type == UML {
		return s.path("root.cow")
	}
	return s.path("root.qcow2")
}

// QMPPath is a QEMU guest's QMP socket.
func (s *Spec) QMPPath() string { return s.path("qmp.sock") }

// CDPath is the config CD image.
func (s *Spec) CDPath() string { return s.path("cd.iso") }

// ConsolePath is the unix socket `cloonix console` connects to.
func (s *Spec) ConsolePath() string { return s.path("console.sock") }

// LogPath receives the emulator's own output.
func (s *Spec) LogPath() string { return s.path(s.Type + ".log") }

// ConsoleLog keeps the guest's console output.
func (s *Spec) ConsoleLog() string { return s.path("console.log") }

// plumbing is how one kind's emulator process is started and wired to
// the shared supervisor (Machine): its command line, the descriptors it
// inherits (closed here once it started) and, once it runs, how its
// console and agent line are attached.
type plumbing struct {
	args    []string
	extra   []*os.File
	connect func()
}

// startProcess writes the config CD into Dir (which must exist and be
// empty of another machine), launches the guest through the kind's
// plumb and returns once its process runs (state booting).
func startProcess(s Spec, ev Events, plumb func(*Machine) (*plumbing, error)) (*Machine, error) {
	m := &Machine{Spec: s, ev: ev, exited: make(chan struct{}), agentOK: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if err := guest.WriteCD(m.CDPath(), m.CD); err != nil {
		m.cancel()
		return nil, fmt.Errorf("config CD for %s: %v", m.Name, err)
	}
	if err := m.launch(plumb); err != nil {
		m.cancel()
		m.closeAll()
		return nil, err
	}
	return m, nil
}

func (m *Machine) launch(plumb func(*Machine) (*plumbing, error)) error {
	logf, err := os.OpenFile(m.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	p, err := plumb(m)
	if p != nil {
		defer func() {
			for _, f := range p.extra {
				f.Close()
			}
		}()
	}
	if err != nil {
		return err
	}
	args := p.args
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = m.Dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = p.extra
	// Own process group: stopping kills UML's helper processes too. The
	// guest dies with the switch.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logf, "# %s\n", strings.Join(args, " "))
	if err := startLocked(cmd); err != nil { // reaper.go
		return fmt.Errorf("starting %s: %v", args[0], err)
	}
	m.cmd, m.pid, m.started = cmd, cmd.Process.Pid, time.Now()
	reaperTell('+', m.pid) // reaper.go
	m.console = NewConsole(m.ConsolePath(), m.ConsoleLog())
	go m.wait()
	p.connect()
	go m.pingLoop()
	return nil
}

func (m *Machine) setAgent(rw io.ReadWriteCloser) {
	c := guest.NewClient(rw)
	m.mu.Lock()
	m.agent = c
	m.closers = append(m.closers, c)
	m.mu.Unlock()
	close(m.agentOK)
}

// AgentDiag says what the agent line did (guest.Client.Diag), for a
// guest that never answered.
func (m *Machine) AgentDiag() string {
	m.mu.Lock()
	a := m.agent
	m.mu.Unlock()
	if a == nil {
		return "agent line not connected"
	}
	return a.Diag()
}

// pingLoop waits for the agent: running once it answers. If that takes
// longer than BootTimeout a boot timeout is reported and it keeps waiting.
func (m *Machine) pingLoop() {
	timeout := m.BootTimeout
	if timeout <= 0 {
		timeout = m.DefaultBootTimeout()
	}
	ready := make(chan struct{})
	defer close(ready)
	go func() {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
			if st, _ := m.State(); st == Booting && m.ctx.Err() == nil && m.ev.BootTimeout != nil {
				m.ev.BootTimeout(m, timeout)
			}
		case <-ready:
		case <-m.ctx.Done():
		}
	}()
	select {
	case <-m.agentOK:
	case <-m.ctx.Done():
		return
	}
	m.mu.Lock()
	agent := m.agent
	m.mu.Unlock()
	if err := agent.Ping(m.ctx); err != nil {
		return
	}
	m.mu.Lock()
	m.ready = time.Since(m.started)
	m.mu.Unlock()
	m.setState(Running, "")
}

// DefaultBootTimeout is this guest's boot timeout unless one was given.
func (m *Machine) DefaultBootTimeout() time.Duration { return DefaultBootTimeout(m.Type, m.Accel) }

// Accelerator is QEMU's kvm or tcg; "" for UML.
func (m *Machine) Accelerator() string { return m.Accel }

// DefaultBootTimeout is how long a guest may take to answer: UML and KVM
// boot in seconds; TCG emulates every instruction.
func DefaultBootTimeout(typ, accel string) time.Duration {
	if typ == KVM && accel != "kvm" {
		return 180 * time.Second
	}
	return 90 * time.Second
}

func (m *Machine) setState(state, detail string) {
	if m.st.Set(state, detail) && m.ev.State != nil {
		m.ev.State(m, state, detail)
	}
}

// wait reaps the process and decides stopped or crashed.
func (m *Machine) wait() {
	err := m.cmd.Wait()
	// Whatever is left of the group (UML helpers) goes too.
	_ = syscall.Kill(-m.pid, syscall.SIGKILL)
	reaperTell('-', m.pid)
	m.cancel()
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	state, detail := Stopped, ""
	switch {
	case stopping:
	case err == nil:
		detail = "the guest powered off"
	default:
		state = Crashed
		detail = exitText(err)
		if why := m.failureReason(); why != "" {
			detail += ": " + why
		}
		log.Printf("vm %s (pid %d): %s; see %s and %s", m.Name, m.pid, detail, m.LogPath(), m.ConsoleLog())
	}
	m.closeAll()
	m.setState(state, detail)
	close(m.exited)
}

// failureReason digs the likely cause of a death out of the logs: a
// guest kernel panic on the console, else the emulator's last words
// (QEMU says why it refused to start there).
func (m *Machine) failureReason() string {
	if b, err := os.ReadFile(m.ConsoleLog()); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if i := strings.Index(l, "Kernel panic"); i >= 0 {
				return clip(strings.TrimSpace(l[i:]))
			}
		}
	}
	b, err := os.ReadFile(m.LogPath())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if m.Type == KVM && !strings.HasPrefix(last, "#") {
		return clip(last)
	}
	return ""
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return err.Error()
}

func (m *Machine) closeAll() {
	m.mu.Lock()
	cl := m.closers
	m.closers = nil
	con := m.console
	m.mu.Unlock()
	for i := len(cl) - 1; i >= 0; i-- {
		_ = cl[i].Close()
	}
	if con != nil {
		con.Close()
	}
}

// Stop kills the guest (its COW is thrown away with work_dir/NAME, so
// there is nothing to flush) and waits for it.
func (m *Machine) Stop() {
	select {
	case <-m.exited: // gone (stopped): its pid may be another's by now
		return
	default:
	}
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	_ = syscall.Kill(-m.pid, syscall.SIGKILL)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		log.Printf("vm %s (pid %d) did not exit after SIGKILL", m.Name, m.pid)
	}
}

// State returns the current state and why.
func (m *Machine) State() (string, string) { return m.st.Get() }

// Pid is the emulator's process id.
func (m *Machine) Pid() int { return m.pid }

// ReadyAfter is the time from launch to the agent's first answer (0
// before that).
func (m *Machine) ReadyAfter() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ready
}

// Exited is closed once the process is gone.
func (m *Machine) Exited() <-chan struct{} { return m.exited }

// WaitSettled waits until the state is no longer booting, or ctx ends.
func (m *Machine) WaitSettled(ctx context.Context) (string, string) { return m.st.WaitSettled(ctx) }

// ErrNotRunning is returned by Exec before the agent answered or after
// the guest stopped.
var ErrNotRunning = errors.New("not running")

// AwaitAgent waits up to d for a booting guest to settle. One still
// booting then is an error naming the way out: a stock image without our
// agent (a cloud image configured by cloud-init) never answers, and
// waiting for it must not block for ever.
func (m *Machine) AwaitAgent(ctx context.Context, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if st, _ := m.WaitSettled(wctx); st == Booting && ctx.Err() == nil {
		return fmt.Errorf("vm %s is booting: its agent did not answer within %v (%w); an image without the cloonix agent never answers: use `cloonix console %s` or ssh", m.Name, d, ErrNotRunning, m.Name)
	}
	return nil
}

// Exec runs argv in the guest through its agent. A guest still booting is
// waited for until ctx ends.
func (m *Machine) Exec(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, int, error) {
	st, det := m.WaitSettled(ctx)
	if st != Running {
		if det != "" {
			st += " (" + det + ")"
		}
		return nil, nil, -1, fmt.Errorf("vm %s is %s: %w", m.Name, st, ErrNotRunning)
	}
	m.mu.Lock()
	agent := m.agent
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	return agent.Exec(ctx, argv, stdin)
}

func socketPair() (*os.File, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest"), nil
}

// fileConn turns our end of a socket pair into a net.Conn (closing f).
func fileConn(f *os.File) (net.Conn, error) {
	defer f.Close()
	return net.FileConn(f)
}

func listenUnix(path string) (*net.UnixListener, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// acceptOne takes the first connection on l from process pid (QEMU,
// checked with SO_PEERCRED), then closes l: a local racer that connects
// first is turned away rather than becoming the VM's console or agent.
func acceptOne(ctx context.Context, l *net.UnixListener, pid int) (net.Conn, error) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	defer l.Close()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		got := peerPid(c)
		if got == pid {
			return c, nil
		}
		log.Printf("%s: refused a connection from pid %d (expected the emulator, pid %d)", l.Addr(), got, pid)
		c.Close()
	}
}

// peerPid is the pid of the process at the other end of c (0 if unknown).
func peerPid(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}
