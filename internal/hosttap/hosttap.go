// Package hosttap opens host tap interfaces as cloonix uses them: a
// virtio_net_hdr before each frame (IFF_VNET_HDR) and, when asked, the
// checksum and TSO offloads, so that TCP segments of up to 64 KiB cross
// whole. The switch makes such taps for container nodes and QEMU guests
// (machine), the tap tux's helper for the host (tux): one opener, one set
// of constants.
package hosttap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Offloads are the TUNSETOFFLOAD flags of linux/if_tun.h for checksum and
// TSO offloads: the kernel hands over TCP segments of up to 64 KiB with
// partial checksums.
const Offloads = 0x01 | 0x02 | 0x04 // TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6

// VnetHdrLen is the virtio_net_hdr before each frame on a tap's
// descriptor (and on the packet socket of a QEMU guest's tap).
const VnetHdrLen = 10

// virtio_net_hdr flags and GSO types (linux/virtio_net.h).
const (
	NeedsCsum = 1    // VIRTIO_NET_HDR_F_NEEDS_CSUM
	GSONone   = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4  = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOTCPv6  = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOECN    = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// MaxRead holds anything one read of a tap gives: the header and a GSO
// segment of a full 64 KiB IP packet with its Ethernet and VLAN headers
// (over the switch's frame limit; a shorter read would truncate it).
const MaxRead = VnetHdrLen + 65535 + 18 + 64

const tunSetVnetHdrSz = 0x400454d8

// Open creates tap name (at most 15 bytes) in the caller's network
// namespace with a VnetHdrLen header on each frame and the given offloads
// (0: the kernel hands over whole, checksummed frames; QEMU sets its own
// for what its guest asks). The descriptor is non-blocking. Errors wrap
// the system's: errors.Is(err, unix.EPERM) means no CAP_NET_ADMIN,
// unix.EBUSY or unix.EINVAL a name taken by another interface.
func Open(name string, offloads int) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w (is the tun module loaded?)", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("creating tap %s needs CAP_NET_ADMIN (%w): run the switch as root", name, err)
		}
		return nil, fmt.Errorf("tap %s: %s: %w", name, what, err)
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
