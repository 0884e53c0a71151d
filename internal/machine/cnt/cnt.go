// Package cnt runs container nodes (DESIGN section 10, docs/containers.md):
// an OCI bundle whose config.json is made from the runtime-spec types, run
// by runc (or another OCI runtime) without any container engine; a root
// filesystem that is an overlay over a cached reference tree; eths that
// are taps moved into the node's network namespace, their descriptors
// kept by the caller; exec and a console through the runtime.
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
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/cmdout"
)

// Spec is everything needed to start one node.
type Spec struct {
	Name   string
	Dir    string // the node's own directory (exists): overlay, bundle, logs
	Rootfs *Rootfs
	MACs   []net.HardwareAddr // eth0, eth1 ...
	// TapNames are host taps the caller made (hosttap.Open) for eth0, eth1
	// ..., moved into the node; empty: Start makes them and Taps gives
	// their descriptors.
	TapNames []string
	// MgmtTap is the host tap (made by the caller) that becomes mgmt0
	// with MgmtMAC and MgmtAddr (ADDR/LEN); "": no mgmt0 (mgmt.go).
	MgmtTap, MgmtAddr string
	MgmtMAC           net.HardwareAddr
	Mem, CPU          int      // MB and CPUs; 0: no limit
	SSHKey            string   // one public key line for root ("" : none)
	DeleteCmds        string   // files_to_delete_from_all_targets
	Trees             []string // files_to_add_in_all_targets, files_to_add_in_NAME
	Runtime           Runtime
	// KeepUpper starts on the upper directory a stopped node kept.
	KeepUpper bool
}

// Check validates s without touching the host.
func (s *Spec) Check() error {
	if err := CheckName(s.Name); err != nil {
		return err
	}
	if s.Rootfs == nil || s.Rootfs.Tree == "" {
		return fmt.Errorf("node %s: no rootfs", s.Name)
	}
	if len(s.MACs) > MaxEths {
		return fmt.Errorf("node %s: %d eths, at most %d", s.Name, len(s.MACs), MaxEths)
	}
	if len(s.TapNames) > 0 && len(s.TapNames) != len(s.MACs) {
		return fmt.Errorf("node %s: %d taps for %d eths", s.Name, len(s.TapNames), len(s.MACs))
	}
	for i, m := range s.MACs {
		if len(m) != 6 || m[0]&1 != 0 {
			return fmt.Errorf("node %s: eth%d: %q is not a unicast Ethernet address", s.Name, i, m)
		}
	}
	if err := s.checkMgmt(); err != nil {
		return err
	}
	if s.Mem < 0 || s.CPU < 0 {
		return fmt.Errorf("node %s: negative --mem or --cpu", s.Name)
	}
	if s.Mem > 0 && s.Mem < MinMem {
		return fmt.Errorf("node %s: --mem %d: a container node needs at least %d MB", s.Name, s.Mem, MinMem)
	}
	if strings.ContainsAny(strings.TrimSpace(s.SSHKey), "\n\r") {
		return fmt.Errorf("node %s: the ssh key must be one line (the content of a .pub file)", s.Name)
	}
	if s.Runtime.Path == "" || s.Runtime.Root == "" {
		return fmt.Errorf("node %s: no OCI runtime", s.Name)
	}
	if !filepath.IsAbs(s.Dir) {
		return fmt.Errorf("node %s: directory %q is not absolute", s.Name, s.Dir)
	}
	return nil
}

// MinMem is the smallest memory limit (MB): below it the runtime's own
// init is killed before the node starts.
const MinMem = 8

// CheckName accepts the names the runtime takes as container IDs.
func CheckName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("node name %q: want 1 to 64 characters", n)
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && strings.ContainsRune("_-.", r))
		if !ok {
			return fmt.Errorf("node name %q: use letters, digits, '_', '-' and '.' (not first)", n)
		}
	}
	return nil
}

// Container is one started node.
type Container struct {
	Spec
	pid   int
	pidfd int // the init's, open from start to cleanup (-1: none)
	taps  []*os.File
	ready chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	reason   string
	stopping bool
	stopped  bool
	// keepUpper keeps the upper directory at cleanup (lifecycle.go).
	keepUpper bool
	execN     int
}

// Paths inside Dir.
func (s *Spec) path(n string) string { return filepath.Join(s.Dir, n) }

// ConsoleLog receives the node init's output (rc.d scripts included).
func (s *Spec) ConsoleLog() string { return s.path("console.log") }

// cgroup is the node's cgroups path: one parent per runtime root (lab),
// so two labs may have nodes of the same name.
func (s *Spec) cgroup() string { return cgroupParent(s.Runtime.Root) + "/" + s.Name }

func cgroupParent(root string) string {
	h := sha256.Sum256([]byte(root))
	return "/cloonix/" + hex.EncodeToString(h[:4])
}

// Start prepares the node's overlay, config and bundle in s.Dir, creates
// the container, plugs its eths and starts its init. It returns once init
// runs; Ready is closed when the rc.d scripts have run. On error nothing
// is left behind.
func Start(ctx context.Context, s Spec) (c *Container, err error) {
	if s.KeepUpper {
		s.clearStale(ctx) // lifecycle.go
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	becomeSubreaper()
	c = &Container{Spec: s, pidfd: -1, ready: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			c.cleanup()
			c = nil
		}
	}()
	for _, d := range []string{"upper", "work", "rootfs", "cloonix"} {
		if d == "upper" && s.KeepUpper && dirExists(s.path(d)) {
			continue // started again on the disk it kept (lifecycle.go)
		}
		if err := os.Mkdir(s.path(d), 0o755); err != nil {
			return c, fmt.Errorf("node %s: %v", s.Name, err)
		}
	}
	// The switch's umask is 077 (docs/security.md), and the overlay's root
	// takes the upper dir's mode: the container's / must stay 0755 for
	// its non-root users (the work_dir above it is private anyway).
	if err := os.Chmod(s.path("upper"), 0o755); err != nil {
		return c, fmt.Errorf("node %s: %v", s.Name, err)
	}
	if err := writeConfig(s.path("cloonix"), &s); err != nil {
		return c, fmt.Errorf("node %s: %v", s.Name, err)
	}
	if err := mountOverlay(s.Rootfs.Tree, s.path("upper"), s.path("work"), s.path("rootfs")); err != nil {
		return c, fmt.Errorf("node %s: %v", s.Name, err)
	}
	spec := makeSpec(bundleSpec{
		Name: s.Name, RootPath: s.path("rootfs"), Env: s.Rootfs.Env, CfgDir: s.path("cloonix"),
		Shim: shimPaths(s.Rootfs.Tree), Mem: s.Mem, CPU: s.CPU, Cgroup: s.cgroup(),
	})
	if err := writeBundle(s.Dir, spec); err != nil {
		return c, err
	}
	readyR, err := c.create(ctx)
	if err != nil {
		return c, err
	}
	defer func() {
		if readyR != nil {
			readyR.Close()
		}
	}()
	if c.taps, err = plugTaps(c.pid, s.MACs, s.TapNames); err != nil {
		return c, fmt.Errorf("node %s: %v", s.Name, err)
	}
	if s.MgmtAddr != "" {
		if err = plugMgmt(c.pid, s.MgmtTap, s.MgmtMAC, s.MgmtAddr); err != nil {
			return c, fmt.Errorf("node %s: %v", s.Name, err)
		}
	}
	pidfd, err := unix.PidfdOpen(c.pid, 0)
	if err != nil {
		return c, fmt.Errorf("node %s: watching its init: %v", s.Name, err)
	}
	if err := s.Runtime.run(ctx, "start", s.Name); err != nil {
		unix.Close(pidfd)
		return c, fmt.Errorf("node %s: %v", s.Name, err)
	}
	c.pidfd = pidfd
	go c.watch(pidfd)
	r := readyR
	readyR = nil
	go c.waitReady(r)
	return c, nil
}

// create runs `runtime create`: the container exists, its init waits for
// start. It returns the read end of the init's ready pipe (fd 3).
func (c *Container) create(ctx context.Context) (*os.File, error) {
	logf, err := os.OpenFile(c.ConsoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	rlog := c.path("runtime.log")
	cmd := c.Runtime.command(ctx, rlog, "create", "--bundle", c.Dir, "--pid-file", c.path("init.pid"), "--preserve-fds", "1", c.Name)
	// The init's stdio are these: its output goes to the console log.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	var before int64
	if st, err := logf.Stat(); err == nil {
		before = st.Size()
	}
	if err := cmd.Run(); err != nil {
		r.Close()
		msg := logTail(rlog)
		if msg == "" { // a runtime without --log: its stderr went to the log
			if b, rerr := os.ReadFile(c.ConsoleLog()); rerr == nil && int64(len(b)) > before {
				msg = strings.TrimSpace(cmdout.Tail(b[before:], 3))
			}
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("node %s: %s create: %s", c.Name, filepath.Base(c.Runtime.Path), msg)
	}
	b, err := os.ReadFile(c.path("init.pid"))
	if err == nil {
		c.pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("node %s: the runtime's pid file: %v", c.Name, err)
	}
	return r, nil
}

// shimPaths are where systemctl is in tree (one path per file), or
// /usr/bin/systemctl when it has none.
func shimPaths(tree string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range []string{"usr/bin/systemctl", "bin/systemctl"} {
		if r, err := resolveIn(tree, p); err == nil {
			rel, _ := filepath.Rel(tree, r)
			if !seen[rel] {
				seen[rel] = true
				out = append(out, "/"+rel)
			}
		}
	}
	if len(out) == 0 {
		if r, err := resolveIn(tree, "usr/bin"); err == nil {
			rel, _ := filepath.Rel(tree, r)
			return []string{"/" + filepath.Join(rel, "systemctl")}
		}
	}
	return out
}

// waitReady closes ready when init writes to its fd 3.
func (c *Container) waitReady(r *os.File) {
	defer r.Close()
	b := make([]byte, 16)
	n, _ := r.Read(b)
	if bytes.HasPrefix(b[:n], []byte("ready")) {
		close(c.ready)
	}
}

// watch waits for init to exit (through a pidfd: init is not our child
// until the runtime exits) and reaps it.
func (c *Container) watch(pidfd int) {
	waitExit(context.Background(), pidfd)
	_, how, _ := reap(c.pid)
	c.mu.Lock()
	if c.reason == "" {
		if c.stopping {
			c.reason = "stopped"
		} else {
			c.reason = fmt.Sprintf("crashed: its init (pid %d) exited", c.pid)
			if how != "" {
				c.reason += " (" + how + ")"
			}
			if t := consoleTail(c.ConsoleLog()); t != "" {
				c.reason += "; console: " + t
			}
		}
	}
	c.mu.Unlock()
	close(c.done)
}

func consoleTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(cmdout.Tail(b, 2), "\n", " | ")
}

// Pid is the node's init, as the host sees it.
func (c *Container) Pid() int { return c.pid }

// Taps are the descriptors of eth0, eth1 ...: each read gives and each
// write takes a virtio_net_hdr (hosttap.VnetHdrLen bytes) then one frame. They are
// non-blocking and belong to the Container until Stop.
func (c *Container) Taps() []*os.File { return c.taps }

// Ready is closed once the node ran its rc.d scripts.
func (c *Container) Ready() <-chan struct{} { return c.ready }

// Done is closed once the node's init is gone; Reason says why.
func (c *Container) Done() <-chan struct{} { return c.done }

// Reason is "stopped" after Stop, or why the node crashed.
func (c *Container) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Stop kills the node and removes everything it had on the host: its
// processes, runtime state, cgroups, overlay mount and upper directory,
// taps. The console log stays in Dir. Stop may be called more than once.
func (c *Container) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.stopped, c.stopping = true, true
	c.mu.Unlock()
	// The init is killed through its pidfd, not `runc kill`: no process
	// to start (hundreds of nodes stop at once with the lab), and no
	// race with a recycled pid. Its pid namespace, and so every process
	// of the node, goes with it.
	if c.pidfd >= 0 {
		_ = unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
		}
	}
	c.cleanup()
}

// cleanup removes what Start made; safe on a half-made node.
func (c *Container) cleanup() {
	// A runtime slowed down by hundreds of nodes stopping at once may
	// miss one deadline: it gets a second.
	for try := 0; try < 2; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.Runtime.run(ctx, "delete", "--force", c.Name)
		cancel()
		if err == nil || c.Runtime.gone(c.Name) {
			break
		}
	}
	if c.pidfd >= 0 {
		select {
		case <-c.done:
			unix.Close(c.pidfd)
			c.pidfd = -1
		default: // the init did not die: keep the watcher's pidfd
		}
	}
	closeAll(c.taps)
	c.taps = nil
	unmount(c.path("rootfs"))
	c.mu.Lock()
	keep := c.keepUpper
	c.mu.Unlock()
	for _, d := range []string{"rootfs", "upper", "work", "cloonix", "config.json", "init.pid"} {
		if d == "upper" && keep {
			continue // the node's disk, for a start with KeepDisk
		}
		_ = os.RemoveAll(c.path(d))
	}
	removeCgroupParents(c.Runtime.Root)
}

// removeCgroupParents removes the lab's empty cgroup directories (the
// runtime removes the node's own).
func removeCgroupParents(root string) {
	parent := cgroupParent(root)
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	more, _ := filepath.Glob("/sys/fs/cgroup" + parent)
	for _, d := range append(dirs, more...) {
		if os.Remove(d) == nil {
			_ = os.Remove(filepath.Dir(d)) // /cloonix, when no lab uses it
		}
	}
}
