package tux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// VXLAN on the wire (RFC 7348, section 5): a UDP datagram whose payload
// is an 8-byte header and then the whole inner Ethernet frame (no FCS).
//
//	flags:u8 (0x08, the I bit: the VNI is valid) reserved:u24
//	vni:u24 reserved:u8
//
// The receiver here follows the RFC: the I bit must be set, the reserved
// bits are ignored.

// VXLAN constants.
const (
	VXLANHdrLen      = 8
	VXLANPort        = 4789      // IANA's port for VXLAN
	MaxVNI           = 1<<24 - 1 // 24 bits
	vxlanFlagI       = 0x08
	minInnerFrame    = 14 // an Ethernet header
	vxlanOverheadIP4 = 20 + 8 + VXLANHdrLen + 14
	vxlanOverheadIP6 = 40 + 8 + VXLANHdrLen + 14
	maxUDPPayloadV4  = 65535 - 20 - 8
	maxUDPPayloadV6  = 65535 - 8
)

// VXLANOverhead is what VXLAN adds around a guest's IP packet on an IPv4
// underlay: outer IPv4 (20) + UDP (8) + VXLAN (8) + the inner Ethernet
// header (14) = 50 bytes. A guest MTU of underlay MTU - 50 never needs
// IP fragmentation of the outer datagrams.
const VXLANOverhead = vxlanOverheadIP4

// Reasons a datagram from the network is dropped, counted per reason.
var (
	errVXShort = errors.New("short") // shorter than the header and an Ethernet header
	errVXFlags = errors.New("flags") // the I bit is clear
)

// putVXLANHdr writes the header for vni into b[0:8].
func putVXLANHdr(b []byte, vni uint32) {
	binary.BigEndian.PutUint32(b[0:4], vxlanFlagI<<24)
	binary.BigEndian.PutUint32(b[4:8], vni<<8)
}

// DecodeVXLAN checks one UDP payload and returns its VNI and the inner
// frame (a sub-slice of p). Reserved bits are ignored, as RFC 7348 asks.
func DecodeVXLAN(p []byte) (vni uint32, frame []byte, err error) {
	if len(p) < VXLANHdrLen+minInnerFrame {
		return 0, nil, errVXShort
	}
	if p[0]&vxlanFlagI == 0 {
		return 0, nil, errVXFlags
	}
	vni = binary.BigEndian.Uint32(p[4:8]) >> 8
	return vni, p[VXLANHdrLen:], nil
}

// VXLANConfig is a checked set of vxlan tux options.
type VXLANConfig struct {
	Remotes []netip.Addr
	VNI     uint32
	Port    uint16
	Local   netip.Addr // invalid (zero) when not given: any address
	// Peers, when given, are the only sources (IP and UDP port) frames
	// are taken from; otherwise any port of a remote's IP.
	Peers []netip.AddrPort
}

// ParsePeers reads --peers IP:PORT[,IP:PORT...]; each IP must be one of
// the remotes.
func ParsePeers(s string, remotes []netip.Addr) ([]netip.AddrPort, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []netip.AddrPort
	for _, f := range strings.Split(s, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(f))
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			return nil, fmt.Errorf("vxlan peer %q: want IP:PORT (IPv6 as [IP]:PORT), the address and UDP source port a remote sends from", f)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		known := false
		for _, r := range remotes {
			known = known || r == ap.Addr()
		}
		if !known {
			return nil, fmt.Errorf("vxlan peer %s is not one of the remotes (--remote); list it there too", ap)
		}
		peers = append(peers, ap)
	}
	return peers, nil
}

// PeersString is --peers' value.
func (c VXLANConfig) PeersString() string {
	p := make([]string, len(c.Peers))
	for i, a := range c.Peers {
		p[i] = a.String()
	}
	return strings.Join(p, ",")
}

// V6 says whether the tux speaks over IPv6.
func (c VXLANConfig) V6() bool { return c.Remotes[0].Is6() }

// ParseVXLAN checks the options of a vxlan tux as the user gives them:
// remote "IP[,IP...]", vni "0".."16777215", port "" (4789) or 1..65535,
// local "" or an IP of this host. Errors say what to change.
func ParseVXLAN(remote, vni, port, local string) (VXLANConfig, error) {
	var c VXLANConfig
	if strings.TrimSpace(remote) == "" {
		return c, errors.New("vxlan needs --remote IP[,IP...] (the hosts of the other ends)")
	}
	seen := map[netip.Addr]bool{}
	for _, s := range strings.Split(remote, ",") {
		s = strings.TrimSpace(s)
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return c, fmt.Errorf("vxlan remote %q is not an IP address; give IPv4 or IPv6 addresses separated by commas", s)
		}
		a = a.Unmap()
		switch {
		case a.IsUnspecified():
			return c, fmt.Errorf("vxlan remote %s is the unspecified address; give the other host's address", a)
		case a.IsMulticast():
			return c, fmt.Errorf("vxlan remote %s is a multicast group; this tux replicates to listed remotes only: list each host", a)
		case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return c, fmt.Errorf("vxlan remote %s is the broadcast address; list each host", a)
		case seen[a]:
			return c, fmt.Errorf("vxlan remote %s is listed twice", a)
		}
		if len(c.Remotes) > 0 && a.Is4() != c.Remotes[0].Is4() {
			return c, fmt.Errorf("vxlan remotes %s and %s: mix of IPv4 and IPv6; use one family per tux", c.Remotes[0], a)
		}
		seen[a] = true
		c.Remotes = append(c.Remotes, a)
	}
	vni = strings.TrimSpace(vni)
	if vni == "" {
		return c, fmt.Errorf("vxlan needs --vni N (0 to %d), the same at every end", MaxVNI)
	}
	n, err := strconv.ParseUint(vni, 10, 64)
	if err != nil || n > MaxVNI {
		return c, fmt.Errorf("vxlan VNI %q is out of range: give an integer from 0 to %d (24 bits)", vni, MaxVNI)
	}
	c.VNI = uint32(n)
	c.Port = VXLANPort
	if port = strings.TrimSpace(port); port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return c, fmt.Errorf("vxlan UDP port %q: give 1 to 65535 (default %d)", port, VXLANPort)
		}
		c.Port = uint16(p)
	}
	if local = strings.TrimSpace(local); local != "" {
		a, err := netip.ParseAddr(local)
		if err != nil || a.Zone() != "" {
			return c, fmt.Errorf("vxlan local %q is not an IP address; give an address of this host", local)
		}
		a = a.Unmap()
		if a.IsMulticast() || a.IsUnspecified() {
			return c, fmt.Errorf("vxlan local %s: give a unicast address of this host (or leave it out for any)", a)
		}
		if a.Is4() != c.Remotes[0].Is4() {
			return c, fmt.Errorf("vxlan local %s and remote %s are of different families", a, c.Remotes[0])
		}
		if seen[a] {
			return c, fmt.Errorf("vxlan remote %s is the tux's own local address; a tux cannot be its own remote", a)
		}
		c.Local = a
	}
	return c, nil
}

// Args are the helper flags for c.
func (c VXLANConfig) Args() []string {
	r := make([]string, len(c.Remotes))
	for i, a := range c.Remotes {
		r[i] = a.String()
	}
	args := []string{"--remote", strings.Join(r, ","), "--vni", strconv.Itoa(int(c.VNI)), "--port", strconv.Itoa(int(c.Port))}
	if c.Local.IsValid() {
		args = append(args, "--local", c.Local.String())
	}
	if len(c.Peers) > 0 {
		args = append(args, "--peers", c.PeersString())
	}
	return args
}
