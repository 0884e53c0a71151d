package tux

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
)

// The tap helper: a host tap interface on a switch port. It runs with
// CAP_NET_ADMIN only (it drops every other capability, see dropToNetAdmin)
// and opens the tap with IFF_VNET_HDR and TSO/checksum offloads, so the
// host's TCP segments of up to 64 KiB cross the switch whole (gso.go).
// The helper only makes the interface and holds the privilege: the
// switch reads and writes the tap's descriptor itself (tap_conn.go), so
// no frame crosses a process on its way.
//
// The helper gives the switch a copy of the tap's file descriptor (one
// byte 'T' with SCM_RIGHTS on fd 3 before any frame). The switch holds
// it and hands it back (--fd 4) to a relaunched helper, so the interface,
// its addresses and its network namespace survive the helper's death.

// tapKind is add_tux kind="tap" [ifname="NAME"] (default: the tux's name).
type tapKind struct{}

func (tapKind) Name() string { return "tap" }
func (tapKind) Usage() Usage {
	return Usage{Short: "a tap interface of the host (named NAME unless --ifname); needs CAP_NET_ADMIN",
		Flags: []Flag{{Name: "ifname", Usage: "host interface name (default: NAME)"}}}
}

func (tapKind) Plan(s *Spec) (Plan, error) {
	ifname := s.Options["ifname"]
	if ifname == "" {
		ifname = s.Name
	}
	if err := CheckIfName(ifname); err != nil {
		return Plan{}, fmt.Errorf("tap %s: %v (set it with --ifname)", s.Name, err)
	}
	if _, err := net.InterfaceByName(ifname); err == nil {
		return Plan{}, fmt.Errorf("tap %s: interface %s already exists on this host; choose another with --ifname", s.Name, ifname)
	}
	for _, o := range s.Others {
		if o.Kind == "tap" && slices.Contains(o.Options, Option{"ifname", ifname}) {
			return Plan{}, fmt.Errorf("tap %s: interface %s belongs to tux %s (it may sit in another network namespace)", s.Name, ifname, o.Name)
		}
	}
	return Plan{Args: []string{"--ifname", ifname}, Shown: []Option{{"ifname", ifname}}}, nil
}

// SwitchConn first takes the tap's descriptor from the helper and keeps
// it, so that a relaunched helper gets the same interface; the port then
// reads and writes the tap itself (tap_conn.go).
func (tapKind) SwitchConn(sock *net.UnixConn, h *Helper) (fabric.Conn, error) {
	f, err := recvFD(sock)
	if err != nil {
		return nil, fmt.Errorf("receiving the tap from its helper: %v", err)
	}
	h.hold(f)
	mtu, _ := strconv.Atoi(h.infoValue("mtu"))
	// A copy of the held descriptor: the helper supervision keeps the
	// original across relaunches.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: dup: %v", h.spec.Name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c, err := NewTapConn(os.NewFile(uintptr(fd), "tap "+h.spec.Name), TapOptions{Name: h.spec.Name, MTU: mtu, MACs: h.spec.MACs, OnClose: func() { sock.Close() }})
	if err != nil {
		return nil, err
	}
	h.setLocalStats(c.stats)
	return c, nil
}

func (tapKind) prepare() error { return dropToNetAdmin() }

func (tapKind) setup(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	return setupTap(args, c, sw)
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

// The helper's capability, descriptors and environment.
const (
	capNetAdmin = 12
	tapHeldFD   = 4
	tapFDEnv    = "CLOONIX_TAP_CAPS"
	bigWrite    = 16 << 10
)

// ErrNoNetAdmin is the clear error for a switch without CAP_NET_ADMIN.
var ErrNoNetAdmin = errors.New("creating a tap interface needs CAP_NET_ADMIN: run the switch as root, or give the cloonix binary the capability (setcap cap_net_admin+ep $(command -v cloonix))")

// CheckIfName validates an interface name as the kernel would (1..15
// bytes, no '/', ':', spaces) before it reaches an ioctl.
func CheckIfName(n string) error {
	if n == "" || len(n) > 15 {
		return fmt.Errorf("interface name %q: want 1 to 15 characters", n)
	}
	if n == "." || n == ".." {
		return fmt.Errorf("interface name %q is not allowed", n)
	}
	for _, r := range n {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Errorf("interface name %q has %q; use letters, digits, '-', '_' and '.'", n, r)
		}
	}
	return nil
}

type tapHelper struct {
	fd     int
	ifname string
	mtu    int
}

func setupTap(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	fs := flag.NewFlagSet("tap", flag.ContinueOnError)
	ifname := fs.String("ifname", "", "interface name")
	held := fs.Bool("held", false, "the switch passes the tap's descriptor on fd 4")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if err := CheckIfName(*ifname); err != nil {
		return nil, nil, err
	}
	t := &tapHelper{ifname: *ifname, mtu: 1500, fd: -1}
	if *held {
		t.fd = tapHeldFD
		if err := unix.IoctlIfreq(t.fd, unix.TUNGETIFF, mustIfreq("")); err != nil {
			// The interface was destroyed (e.g. with its namespace): make a new one.
			unix.Close(t.fd)
			t.fd = -1
		}
	}
	if t.fd < 0 {
		if err := t.create(); err != nil {
			return nil, nil, err
		}
	}
	unix.CloseOnExec(t.fd)
	if l, err := netlink.LinkByName(t.ifname); err == nil && l.Attrs().MTU > 0 {
		t.mtu = l.Attrs().MTU
	}
	// Hand the switch a copy of the descriptor (see above).
	uc, ok := sw.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("fd %d is not a unix socket", SwitchFD)
	}
	if _, _, err := uc.WriteMsgUnix([]byte{'T'}, unix.UnixRights(t.fd), nil); err != nil {
		return nil, nil, fmt.Errorf("passing the tap to the switch: %v", err)
	}
	return t, map[string]string{"ifname": t.ifname, "mtu": strconv.Itoa(t.mtu)}, nil
}

func mustIfreq(name string) *unix.Ifreq {
	r, err := unix.NewIfreq(name)
	if err != nil {
		panic(err)
	}
	return r
}

// create makes the interface, sets the offloads and brings it up.
func (t *tapHelper) create() error {
	if _, err := net.InterfaceByName(t.ifname); err == nil {
		return fmt.Errorf("interface %s already exists on this host; choose another name with --ifname", t.ifname)
	}
	f, err := hosttap.Open(t.ifname, hosttap.Offloads)
	switch {
	case errors.Is(err, unix.EPERM):
		return ErrNoNetAdmin
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EINVAL):
		return fmt.Errorf("interface %s exists or is busy; choose another name with --ifname", t.ifname)
	case err != nil:
		return fmt.Errorf("creating tap %s: %v", t.ifname, err)
	}
	// The helper keeps a bare descriptor with one owner (passed to the
	// switch, held across relaunches): an *os.File kept beside it would
	// close it a second time when collected.
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return fmt.Errorf("tap %s: %v", t.ifname, err)
	}
	l, err := netlink.LinkByName(t.ifname)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("tap %s: bringing it up: %v", t.ifname, err)
	}
	t.fd = fd
	return nil
}

// dropToNetAdmin leaves the helper with CAP_NET_ADMIN alone. Capabilities
// are per thread in Linux, so it drops them on one locked thread and
// re-executes itself from there: the new image gets only what that
// thread's bounding set allows. It fails clearly when CAP_NET_ADMIN is
// missing.
func dropToNetAdmin() error {
	eff, err := capEff()
	if err != nil {
		return err
	}
	if eff&(1<<capNetAdmin) == 0 {
		return ErrNoNetAdmin
	}
	if eff == 1<<capNetAdmin || os.Getenv(tapFDEnv) != "" {
		return noNewPrivs()
	}
	runtime.LockOSThread()
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if c == capNetAdmin {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			// Without CAP_SETPCAP the bounding set stays; the checks
			// below still hold the helper to what it has.
			break
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: 1 << capNetAdmin, Permitted: 1 << capNetAdmin, Inheritable: 1 << capNetAdmin}}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("dropping capabilities: %v", err)
	}
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, capNetAdmin, 0, 0)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), tapFDEnv+"=1")
	// no_new_privs survives the exec; the ambient CAP_NET_ADMIN too.
	if err := noNewPrivs(); err != nil {
		return err
	}
	return syscall.Exec(self, os.Args, env)
}

// capEff reads the effective capability set of this process.
func capEff() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

func (t *tapHelper) handle(r Request) error {
	return fmt.Errorf("a tap tux has no %q", r.Op)
}

// stats has no counters: the switch counts (TapConn.stats).
func (t *tapHelper) stats() Stats { return Stats{State: "up"} }

// serve waits: the switch moves the frames itself (tap_conn.go).
func (t *tapHelper) serve(sw net.Conn) error { return idleHelper{}.serve(sw) }
