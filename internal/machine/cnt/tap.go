package cnt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"cloonix/internal/hosttap"
)

// A node's eths are taps: made in the host's namespace with a virtio
// header and TCP/checksum offloads (as the tap tux does, internal/tux),
// moved into the node's network namespace, renamed ethN there, given
// their MAC and brought up. The creator keeps each tap's descriptor, the
// node's end of a switch port: no helper process, no veth pair. The tap
// disappears with the namespace when the node stops.

// MaxEths bounds a node's interfaces.
const MaxEths = 32

// openTap creates a tap with a temporary unique name in the caller's
// network namespace, with all the offloads.
func openTap() (*os.File, string, error) {
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	name := "cnt" + hex.EncodeToString(rnd[:]) // 13 characters, unique enough
	f, err := hosttap.Open(name, hosttap.Offloads)
	return f, name, err
}

// plugTaps puts one tap per MAC in the namespace of pid as eth0, eth1
// ...: the host taps named in names (made by the caller), or taps it
// makes and returns when names is empty. It also brings lo up. On
// failure the taps it made are closed (and so destroyed).
func plugTaps(pid int, macs []net.HardwareAddr, names []string) ([]*os.File, error) {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return nil, fmt.Errorf("the node's network namespace: %v", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in the node's namespace: %v", err)
	}
	defer h.Close()
	var taps []*os.File
	fail := func(err error) ([]*os.File, error) {
		closeAll(taps)
		return nil, err
	}
	for i, mac := range macs {
		var tmp string
		if len(names) > 0 {
			tmp = names[i]
		} else {
			f, name, err := openTap()
			if err != nil {
				return fail(err)
			}
			taps, tmp = append(taps, f), name
		}
		l, err := netlink.LinkByName(tmp)
		if err == nil {
			err = netlink.LinkSetNsFd(l, int(ns))
		}
		if err != nil {
			return fail(fmt.Errorf("moving tap %s into the node: %v", tmp, err))
		}
		eth := fmt.Sprintf("eth%d", i)
		if l, err = h.LinkByName(tmp); err == nil {
			err = h.LinkSetName(l, eth)
		}
		if err == nil {
			err = h.LinkSetHardwareAddr(l, mac)
		}
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			return fail(fmt.Errorf("%s (tap %s): %v", eth, tmp, err))
		}
	}
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fail(fmt.Errorf("bringing lo up: %v", err))
	}
	return taps, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
