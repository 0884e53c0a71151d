// Package hostif is the host's side of the management network: the tap
// interface the switch owns, as a fabric port's Conn, filtered by
// mgmt.Filter. It is apart from package mgmt, which the config (a leaf
// that clients import) uses to check <mgmt>.
package hostif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/mgmt"
)

// Iface is the host's side of the management network: a tap interface
// the switch creates and holds (it vanishes with the switch), with the
// network's .1 and no forwarding. As a fabric.Conn it is the port of the
// host on the management lan; frames towards the host pass the Filter.
type Iface struct {
	Name   string
	file   *os.File
	filter *mgmt.Filter
}

// OpenIface creates the tap ifname with the host's address of n.
func OpenIface(ifname string, n *mgmt.Net, allow mgmt.Allow) (*Iface, error) {
	if _, err := net.InterfaceByName(ifname); err == nil {
		return nil, fmt.Errorf("management network: interface %s already exists (another switch with this work_dir?); stop it, or set <mgmt>off</mgmt>", ifname)
	}
	if err := overlap(n); err != nil {
		return nil, err
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("management network: open /dev/net/tun: %v (is the tun module loaded?)", err)
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("management network: creating %s needs CAP_NET_ADMIN: run the switch as root, or set <mgmt>off</mgmt>", ifname)
		}
		return nil, fmt.Errorf("management network: creating tap %s: %v", ifname, err)
	}
	i := &Iface{Name: ifname, file: os.NewFile(uintptr(fd), ifname), filter: mgmt.NewFilter(n.Host(), allow)}
	if err := i.configure(n); err != nil {
		i.Close()
		return nil, fmt.Errorf("management network: %s: %v", ifname, err)
	}
	return i, nil
}

// configure: no IPv6 and no forwarding on the interface (nothing that
// enters from the management lan is routed on), then the address and up.
func (i *Iface) configure(n *mgmt.Net) error {
	for _, s := range []struct{ path, v string }{{"ipv6/conf/%s/disable_ipv6", "1"}, {"ipv4/conf/%s/forwarding", "0"},
		{"ipv4/conf/%s/proxy_arp", "0"}, {"ipv4/conf/%s/accept_redirects", "0"}} {
		p := "/proc/sys/net/" + fmt.Sprintf(s.path, i.Name)
		if err := os.WriteFile(p, []byte(s.v), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	l, err := netlink.LinkByName(i.Name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(n.HostPrefix().String())
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s: %v", n.HostPrefix(), err)
	}
	return netlink.LinkSetUp(l)
}

// overlap refuses a network already on one of the host's interfaces
// (another switch's management network, a docker bridge...).
func overlap(n *mgmt.Net) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if a.IPNet != nil && (a.IPNet.Contains(n.Prefix.Addr().AsSlice()) || n.Prefix.Contains(addrFrom(a.IP))) {
			name := "?"
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Errorf("management network %s overlaps %s on host interface %s: set another network in <mgmt> (e.g. 172.31.0.0/24), or <mgmt>off</mgmt>", n.Prefix, a.IPNet, name)
		}
	}
	return nil
}

func addrFrom(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// ReadFrame is a frame the host sent to the management lan.
func (i *Iface) ReadFrame() (*fabric.Frame, error) {
	for {
		f := fabric.NewFrame(fabric.MaxFrame)
		n, err := i.file.Read(f.Buf())
		if err != nil {
			f.Release()
			return nil, err
		}
		if n < fabric.MinFrame {
			f.Release()
			continue
		}
		f.N = n
		i.filter.FromHost(f.Bytes())
		return f, nil
	}
}

// WriteFrame hands a frame to the host if the filter lets it through.
func (i *Iface) WriteFrame(b []byte) error {
	if !i.filter.ToHost(b) {
		return nil
	}
	_, err := i.file.Write(b)
	if errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) {
		return nil // the interface is down: the frame is lost, the port stays
	}
	return err
}

// Flush has nothing to do: each frame is one write.
func (i *Iface) Flush() error { return nil }

// Close removes the interface (it is not persistent).
func (i *Iface) Close() error { return i.file.Close() }
