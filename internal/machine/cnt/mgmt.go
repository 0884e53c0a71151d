package cnt

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A node's mgmt0 (docs/automation.md): one more tap the switch makes
// (port kind "tap", as the eths) and puts on the management lan; Start
// moves it into the node, names it mgmt0 and gives it the node's MAC and
// address there. No agent runs in a node, so this and the init do what
// the agent does in a VM (internal/guest/mgmt_linux.go): no gateway, so
// the node's default route never goes through the management network,
// and no forwarding of what comes in on it.

// MgmtIf is the name of the management interface in a node.
const MgmtIf = "mgmt0"

// mgmtTapName is the host name of a node's mgmt0 tap until it moves into
// the node: unique per work_dir and node, 14 characters.
func mgmtTapName(dir string) string {
	return tapName(dir, -1)
}

// checkMgmt validates the management part of s.
func (s *Spec) checkMgmt() error {
	if s.MgmtAddr == "" {
		return nil
	}
	p, err := netip.ParsePrefix(s.MgmtAddr)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("node %s: management address %q: want IPv4 ADDR/LEN", s.Name, s.MgmtAddr)
	}
	if s.MgmtTap == "" {
		return fmt.Errorf("node %s: a management address without its tap", s.Name)
	}
	if len(s.MgmtMAC) != 6 || s.MgmtMAC[0]&1 != 0 {
		return fmt.Errorf("node %s: %s: %q is not a unicast Ethernet address", s.Name, MgmtIf, s.MgmtMAC)
	}
	return nil
}

// plugMgmt moves the host tap into the namespace of pid as mgmt0 with
// its MAC and address and brings it up. The node's init turns
// forwarding off on it (config.go), after the rootfs's sysctl.d.
func plugMgmt(pid int, tap string, mac net.HardwareAddr, addr string) error {
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		return fmt.Errorf("%s: %q: %v", MgmtIf, addr, err)
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("the node's network namespace: %v", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the node's namespace: %v", err)
	}
	defer h.Close()
	l, err := netlink.LinkByName(tap)
	if err == nil {
		err = netlink.LinkSetNsFd(l, int(ns))
	}
	if err != nil {
		return fmt.Errorf("moving tap %s into the node: %v", tap, err)
	}
	if l, err = h.LinkByName(tap); err == nil {
		err = h.LinkSetName(l, MgmtIf)
	}
	if err == nil {
		err = h.LinkSetHardwareAddr(l, mac)
	}
	if err == nil {
		err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}})
	}
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("%s (tap %s): %v", MgmtIf, tap, err)
	}
	return nil
}
