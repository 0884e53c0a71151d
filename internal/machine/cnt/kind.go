package cnt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"cloonix/internal/machine"
)

// Kind is the container node kind (`--type cnt`) of the switch's
// registry (machine/kinds).
type Kind struct{}

// Name is the add_vm type.
func (Kind) Name() string { return "cnt" }

// PortKind is the switch's port kind of a node's eths: a tap the switch
// makes (hosttap.Open) under the name in Spec.EthSocks and keeps; Start moves
// it into the node.
const PortKind = "tap"

// Check validates s without changing the host: the rootfs reference, the
// runtime, limits (0: none, the default) and eths; it names the taps.
func (Kind) Check(s *machine.Spec) error {
	s.Type = "cnt"
	if err := CheckName(s.Name); err != nil {
		return err
	}
	if s.Mem == machine.Unset {
		s.Mem = 0
	}
	if s.CPU == machine.Unset {
		s.CPU = 0
	}
	if s.Eths == machine.Unset {
		s.Eths = 1
	}
	switch {
	case s.Mem != 0 && (s.Mem < MinMem || s.Mem > machine.MaxMem):
		return fmt.Errorf("vm %s: memory %d MB: give --mem from %d to %d, or none for no limit", s.Name, s.Mem, MinMem, machine.MaxMem)
	case s.CPU < 0 || s.CPU > machine.MaxCPU:
		return fmt.Errorf("vm %s: %d CPUs: give --cpu from 1 to %d, or none for no limit", s.Name, s.CPU, machine.MaxCPU)
	case s.Eths < 0 || s.Eths > MaxEths:
		return fmt.Errorf("vm %s: %d eths: give --eth from 0 to %d", s.Name, s.Eths, MaxEths)
	}
	if s.KernelArg != "" || s.Transport != "" {
		return fmt.Errorf("vm %s: a cnt node runs on the host's kernel: drop --kernel and --transport", s.Name)
	}
	ref, err := ParseRef(s.Rootfs)
	if err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	if ref.Kind == RefBulk {
		if _, err := os.Stat(filepath.Join(s.Host.BulkDir, ref.Arg+".img")); err != nil {
			return fmt.Errorf("vm %s: rootfs %s: no %s.img in bulk_dir %s (build it with `cloonix bulk build %s`, or give a path)", s.Name, ref, ref.Arg, s.Host.BulkDir, ref.Arg)
		}
	}
	if _, err := FindRuntime(s.Host.OCIRuntime); err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	s.Dir = filepath.Join(s.Host.WorkDir, s.Name)
	s.PortKind = PortKind
	s.EthSocks = nil
	for i := 0; i < s.Eths; i++ {
		s.EthSocks = append(s.EthSocks, tapName(s.Dir, i))
	}
	// The daemon gives mgmt0 an address only when the management
	// network is on (mgmt.go).
	s.MgmtSock = mgmtTapName(s.Dir)
	s.CD.Name, s.CD.Eths = s.Name, s.Eths
	return nil
}

// tapName is the host name of a node's eth until it moves into the node:
// unique per work_dir, node and eth (-1: mgmt0), 14 characters.
func tapName(dir string, i int) string {
	n := fmt.Sprintf("%s/eth%d", dir, i)
	if i < 0 {
		n = dir + "/" + MgmtIf
	}
	h := sha256.Sum256([]byte(n))
	return "cn" + hex.EncodeToString(h[:6])
}

// Start resolves the rootfs (unpacking it into bulk_dir's cache the first
// time) and starts the node on the taps the switch made.
func (Kind) Start(ms machine.Spec, ev machine.Events) (machine.Guest, error) {
	ref, err := ParseRef(ms.Rootfs)
	if err != nil {
		return nil, err
	}
	rf, err := (&Store{BulkDir: ms.Host.BulkDir}).Resolve(ref)
	if err != nil {
		return nil, err
	}
	path, err := FindRuntime(ms.Host.OCIRuntime)
	if err != nil {
		return nil, err
	}
	s := Spec{
		Name: ms.Name, Dir: ms.Dir, Rootfs: rf, Mem: ms.Mem, CPU: ms.CPU, TapNames: ms.EthSocks,
		SSHKey: ms.CD.SSHKey, DeleteCmds: ms.CD.DeleteCmds, Trees: ms.CD.Trees,
		Runtime:   Runtime{Path: path, Root: filepath.Join(ms.Host.WorkDir, ".runc")},
		KeepUpper: ms.KeepDisk,
	}
	for i := 0; i < ms.Eths; i++ {
		mac, err := net.ParseMAC(machine.MAC(ms.Name, i))
		if err != nil {
			return nil, err
		}
		s.MACs = append(s.MACs, mac)
	}
	if _, ok := ms.MgmtPort(); ok {
		mac, err := net.ParseMAC(machine.MgmtMAC(ms.Name))
		if err != nil {
			return nil, err
		}
		s.MgmtTap, s.MgmtAddr, s.MgmtMAC = ms.MgmtSock, ms.Mgmt, mac
	}
	c, err := Start(context.Background(), s)
	if err != nil {
		return nil, err
	}
	g := &guest{c: c, spec: ms, ev: ev, exited: make(chan struct{}), shell: make(chan struct{})}
	g.console = machine.NewConsole(filepath.Join(ms.Dir, "console.sock"), filepath.Join(ms.Dir, "shell.log"))
	go g.serveConsole()
	go g.follow()
	// The node's init leads its own group; it does not die with the
	// switch by itself (lifecycle.go).
	machine.ReaperAdd(c.Pid())
	return g, nil
}

// guest is a node as machine.Guest.
type guest struct {
	c       *Container
	spec    machine.Spec
	ev      machine.Events
	console *machine.Console

	st     machine.StateCell
	exited chan struct{}
	shell  chan struct{} // closed once the console has its first shell (or never will)
}

func (g *guest) set(state, detail string) {
	if g.st.Set(state, detail) && g.ev.State != nil {
		g.ev.State(g, state, detail)
	}
}

// follow turns the node's ready and done signals into states.
func (g *guest) follow() {
	select {
	case <-g.c.Ready():
		// Running once the console has its shell, so a client that
		// connects then is heard.
		select {
		case <-g.shell:
		case <-g.c.Done():
		}
		g.set(machine.Running, "")
	case <-g.c.Done():
	}
	<-g.c.Done()
	machine.ReaperRemove(g.c.Pid())
	g.console.Close()
	if r := g.c.Reason(); r == "stopped" {
		g.set(machine.Stopped, "")
	} else {
		g.set(machine.Crashed, r)
	}
	close(g.exited)
}

// serveConsole keeps a shell on the console socket while the node runs
// (a new one when the last exits).
func (g *guest) serveConsole() {
	first := true
	defer func() {
		if first {
			close(g.shell)
		}
	}()
	for {
		select {
		case <-g.c.Done():
			return
		case <-g.c.Ready():
		}
		k, err := g.c.Console(context.Background())
		if err != nil {
			return
		}
		g.console.Attach(k)
		if first {
			first = false
			close(g.shell)
		}
		waitExit(context.Background(), k.pidfd)
		k.Close()
		select {
		case <-g.c.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (g *guest) Pid() int { return g.c.Pid() }

func (g *guest) State() (string, string) { return g.st.Get() }

func (g *guest) WaitSettled(ctx context.Context) (string, string) { return g.st.WaitSettled(ctx) }

func (g *guest) AwaitAgent(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	st, det := g.WaitSettled(ctx)
	if st == machine.Running {
		return nil
	}
	if st == machine.Booting {
		return fmt.Errorf("vm %s: its rc.d scripts have not finished after %v: %w", g.spec.Name, d, machine.ErrNotRunning)
	}
	return fmt.Errorf("vm %s is %s (%s): %w", g.spec.Name, st, det, machine.ErrNotRunning)
}

func (g *guest) Exec(ctx context.Context, argv []string, stdin []byte) ([]byte, []byte, int, error) {
	var out, errb bytes.Buffer
	var in *bytes.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	var code int
	var err error
	if in != nil {
		code, err = g.c.Exec(ctx, argv, in, &out, &errb)
	} else {
		code, err = g.c.Exec(ctx, argv, nil, &out, &errb)
	}
	return out.Bytes(), errb.Bytes(), code, err
}

func (g *guest) ConsolePath() string               { return filepath.Join(g.spec.Dir, "console.sock") }
func (g *guest) ConsoleLog() string                { return g.c.ConsoleLog() }
func (g *guest) Exited() <-chan struct{}           { return g.exited }
func (g *guest) Accelerator() string               { return "" }
func (g *guest) DefaultBootTimeout() time.Duration { return 60 * time.Second }
func (g *guest) Ports() []machine.Port             { return g.spec.Ports() }

func (g *guest) Stop() {
	g.c.Stop()
	<-g.exited
}
