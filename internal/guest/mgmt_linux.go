package guest

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// setMgmtAddr gives mgmt0 its address on the management network and
// brings it up (ioctls, as fixEthNames: the agent stays small). No
// gateway: the guest's default route never goes through the management
// network, and the host answers only from its .1 address.
func setMgmtAddr(prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("%q: want IPv4 ADDR/LEN", prefix)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	mask := net.CIDRMask(p.Bits(), 32)
	for _, set := range []struct {
		req uint
		v   []byte
	}{{unix.SIOCSIFADDR, p.Addr().AsSlice()}, {unix.SIOCSIFNETMASK, mask}} {
		ifr, err := unix.NewIfreq(MgmtIf)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(set.v); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, set.req, ifr); err != nil {
			return fmt.Errorf("%s %s: %v (no NIC with a %s... MAC?)", MgmtIf, p, err, MgmtMACPrefix)
		}
	}
	// Frames that come in on mgmt0 are never routed on to the lans.
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+MgmtIf+"/forwarding", []byte("0"), 0o644)
	return setUp(fd, MgmtIf, true)
}
