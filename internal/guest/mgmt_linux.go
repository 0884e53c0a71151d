package guest

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
)

// setMgmtAddr gives mgmt0 its address on the management network and
// brings it up. No gateway: the guest's default route never goes through
// the management network, and the host answers only from its .1 address.
func setMgmtAddr(prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("%q: want ADDR/LEN", prefix)
	}
	l, err := netlink.LinkByName(MgmtIf)
	if err != nil {
		return fmt.Errorf("%s: %v (no NIC with a %s... MAC)", MgmtIf, err, MgmtMACPrefix)
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("%s %s: %v", MgmtIf, p, err)
	}
	// Frames that come in on mgmt0 are never routed on to the lans.
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+MgmtIf+"/forwarding", []byte("0"), 0o644)
	return netlink.LinkSetUp(l)
}
