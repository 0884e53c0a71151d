package machine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"cloonix/internal/hosttap"
)

// A QEMU guest's eths are taps with a virtio-net header (VTapPortKind),
// as QEMU's own `-netdev tap` on a bridge: the guest's virtio-net then
// hands over TCP segments of up to 64 KiB with partial checksums, and
// takes them, instead of cutting and checksumming every 1500-byte frame
// in emulated code. `-netdev stream` carries plain frames (QEMU 7.2 has
// no socket netdev with a virtio-net header), which under TCG cost 0.37x
// a bridge's throughput (docs/benchmarks.md).
//
// QEMU gets the tap's descriptor. The switch takes the interface's side:
// a packet socket bound to the tap with PACKET_VNET_HDR, so super frames
// cross whole, with the same header as a node's tap (tux.TapConn).
// The taps live in one network namespace of the switch's own, made on
// first use: no interface appears on the host, and nothing there routes,
// answers or sends (no addresses, no IPv6, no ARP). The switch keeps each
// tap's descriptor while its port exists, so a stopped guest starts again
// on the same tap. The namespace goes with the switch.
//
// Where the switch cannot make them (no CAP_NET_ADMIN, CAP_NET_RAW or
// CAP_SYS_ADMIN, no /dev/net/tun) QEMU's eths fall back to `-netdev
// stream` (StreamPortKind).

// Port kinds of a QEMU guest's eths.
const (
	VTapPortKind   = "vtap"
	StreamPortKind = "stream"
)

// vtapUsable says whether this process can make QEMU's taps: it tries
// once (a variable so a test can choose).
var vtapUsable = func() bool {
	vtapProbe.Do(func() {
		err := inVTapNS(func() error {
			tap, sock, err := plugVTap("qvprobe")
			if err == nil {
				sock.Close()
				tap.Close()
			}
			return err
		})
		if vtapProbe.ok = err == nil; err != nil {
			log.Printf("QEMU guests' eths on stream sockets, not taps: %v", err)
		}
	})
	return vtapProbe.ok
}

var vtapProbe struct {
	sync.Once
	ok bool
}

// vtapName is the tap of socket path p: unique per work_dir, guest and
// eth, 14 characters.
func vtapName(p string) string {
	h := sha256.Sum256([]byte(p))
	return "qv" + hex.EncodeToString(h[:6])
}

// vtapNS is the switch's private namespace of QEMU taps and the taps'
// descriptors by name, held for the QEMU that plugs them.
var vtapNS struct {
	once sync.Once
	ns   netns.NsHandle
	err  error
	mu   sync.Mutex
	taps map[string]*os.File
}

// inVTapNS runs fn on a thread in the taps' namespace, made on first use.
func inVTapNS(fn func() error) error {
	vtapNS.once.Do(func() { vtapNS.ns, vtapNS.err = onThread(newVTapNS) })
	if vtapNS.err != nil {
		return fmt.Errorf("the QEMU taps' network namespace: %v", vtapNS.err)
	}
	_, err := onThread(func() (netns.NsHandle, error) {
		if err := netns.Set(vtapNS.ns); err != nil {
			return 0, err
		}
		return 0, fn()
	})
	return err
}

// onThread runs fn on a locked thread that dies after it (it may have
// left the process's namespace).
func onThread(fn func() (netns.NsHandle, error)) (netns.NsHandle, error) {
	type res struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ns, err := fn()
		c <- res{ns, err}
	}()
	r := <-c
	return r.ns, r.err
}

// newVTapNS makes the namespace on the calling (locked) thread: no IPv6
// in it, so an interface that comes up sends nothing of its own.
func newVTapNS() (netns.NsHandle, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return 0, err
	}
	for _, k := range []string{"all", "default"} {
		p := "/proc/sys/net/ipv6/conf/" + k + "/disable_ipv6"
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%s: %v", p, err)
		}
	}
	return netns.Get()
}

// OpenVTap makes tap name in the switch's namespace of QEMU taps, up,
// and returns a packet socket bound to it with PACKET_VNET_HDR that hears
// only what the guest sends (PACKET_IGNORE_OUTGOING: not what goes toward
// the guest, its own sends or anything else): the switch's side of the
// port. The tap's descriptor is held for QEMU
// (VTapFile) until release. The socket is non-blocking.
func OpenVTap(name string) (sock *os.File, release func(), err error) {
	var tap *os.File
	if err := inVTapNS(func() (err error) { tap, sock, err = plugVTap(name); return err }); err != nil {
		return nil, nil, err
	}
	vtapNS.mu.Lock()
	if vtapNS.taps == nil {
		vtapNS.taps = map[string]*os.File{}
	}
	vtapNS.taps[name] = tap
	vtapNS.mu.Unlock()
	var once sync.Once
	return sock, func() {
		once.Do(func() {
			vtapNS.mu.Lock()
			delete(vtapNS.taps, name)
			vtapNS.mu.Unlock()
			tap.Close() // the last descriptor once QEMU is gone: the tap goes
		})
	}, nil
}

// plugVTap makes tap name in the calling thread's namespace (the taps'),
// up without ARP, and its packet socket.
func plugVTap(name string) (tap, sock *os.File, err error) {
	if tap, err = hosttap.Open(name, 0); err != nil { // QEMU sets the offloads its guest asks for
		return nil, nil, err
	}
	if sock, err = upVTap(name); err != nil {
		tap.Close()
		return nil, nil, fmt.Errorf("tap %s: %v", name, err)
	}
	return tap, sock, nil
}

// upVTap brings tap name up without ARP and opens its packet socket.
func upVTap(name string) (*os.File, error) {
	h, err := netlink.NewHandleAt(vtapNS.ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if err := h.LinkSetARPOff(l); err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, err
	}
	return packetSocket(l.Attrs().Index)
}

// VTapFile is a new descriptor of tap name, for QEMU (and tests). What
// the tap queued toward the guest while no QEMU read it (a stopped guest:
// up to the tap's queue length) is dropped first, so a guest started
// again does not get frames from before.
func VTapFile(name string) (*os.File, error) {
	vtapNS.mu.Lock()
	defer vtapNS.mu.Unlock()
	t, ok := vtapNS.taps[name]
	if !ok {
		return nil, fmt.Errorf("tap %s: no such port of the switch", name)
	}
	drainTap(int(t.Fd()))
	fd, err := unix.FcntlInt(t.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: dup: %v", name, err)
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// drainTap reads non-blocking tap fd until it is empty (EAGAIN). A
// tap holds at most its queue length (500 frames), so the bound on reads
// is only against an error that would repeat.
func drainTap(fd int) {
	b := make([]byte, hosttap.MaxRead)
	for range 4096 {
		if _, err := unix.Read(fd, b); err == unix.EAGAIN || err == unix.EBADF {
			return
		}
	}
}

// packetSocket is a non-blocking packet socket on interface index with a
// virtio-net header on each frame, deaf to the frames going out there.
func packetSocket(index int) (*os.File, error) {
	// Protocol 0 until bound: it hears nothing from other interfaces.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %v", err)
	}
	opts := []struct {
		level, opt, v int
		what          string
	}{
		{unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"},
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"},
		// Straight to the tap's queue toward QEMU: a qdisc in front of
		// it would only add a queue and a softirq.
		{unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"},
		// Room for a burst of super frames either way.
		{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4 << 20, "SO_RCVBUFFORCE"},
		{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4 << 20, "SO_SNDBUFFORCE"},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("packet socket: %s: %v", o.what, err)
		}
	}
	all := int(htons(unix.ETH_P_ALL))
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(all), Ifindex: index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket: bind: %v", err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("packet socket %d", index)), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
