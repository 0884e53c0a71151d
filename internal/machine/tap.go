package machine

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Taps with a virtio-net header, made by the switch for the guests' eths:
// a container node's (cnt, whose descriptor the switch keeps) and a QEMU
// guest's (qemu_tap.go, whose descriptor QEMU gets).

// TapOffloads are the TUNSETOFFLOAD flags of linux/if_tun.h for checksum
// and TSO offloads: the kernel hands over TCP segments of up to 64 KiB
// with partial checksums.
const TapOffloads = 0x01 | 0x02 | 0x04 // TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6

const tunSetVnetHdrSz = 0x400454d8

// VnetHdrLen is the virtio_net_hdr before each frame on a tap's
// descriptor and on a QEMU tap's packet socket (qemu_tap.go).
const VnetHdrLen = 10

// OpenTap creates the tap name (at most 15 bytes) in the caller's network
// namespace with a virtio_net_hdr (VnetHdrLen) on each frame and the given
// offloads (0: the kernel hands over whole, checksummed frames; QEMU sets
// its own for what its guest asks). The descriptor is non-blocking.
func OpenTap(name string, offloads int) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %v (is the tun module loaded?)", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, errors.New("creating a tap needs CAP_NET_ADMIN: run the switch as root")
		}
		return nil, fmt.Errorf("tap %s: %s: %v", name, what, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("name", err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF", err)
	}
	if err := unix.IoctlSetPointerInt(fd, tunSetVnetHdrSz, VnetHdrLen); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}
