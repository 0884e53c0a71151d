package tux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"cloonix/internal/fabric"
)

// vxlanKind is add_tux kind="vxlan" remote="IP[,IP...]" vni="N"
// [port="4789"] [local="IP"] (the helper is vxlan.go, the bytes
// vxlan_wire.go). Everything that can be checked before the helper
// starts is checked here: the values, the local address, a route to each
// remote and the UDP port against this switch's other vxlan tux. The
// helper then binds the port; a port taken by anything else fails there,
// with its own sentence.
type vxlanKind struct{}

func (vxlanKind) Name() string { return "vxlan" }
func (vxlanKind) Usage() Usage {
	return Usage{Args: "--remote IP[,IP...] --vni N [--port 4789] [--local IP]",
		Short: "carry the lans of this tux as standard VXLAN (RFC 7348) over UDP to other hosts",
		Long: `Carry the frames of the lans this tux is attached to as VXLAN over UDP
to one or more remotes: another cloonix's vxlan tux, a Linux vxlan device
(ip link add vx0 type vxlan id N remote IP dstport 4789) or a switch.
Broadcast and unknown destinations go to every remote; the tux learns
behind which remote each MAC lives. The tux listens on --port and sends
to the remotes' --port. VXLAN adds 50 bytes on an IPv4 underlay: give
guests an MTU of (underlay MTU - 50), or the underlay jumbo frames; see
docs/multi-host.md.`,
		Flags: []Flag{
			{Name: "remote", Usage: "IP address(es) of the other ends, comma-separated"},
			{Name: "vni", Usage: "VXLAN network identifier, 0 to 16777215, the same at every end"},
			{Name: "port", Usage: "UDP port to listen on and send to (default 4789)"},
			{Name: "local", Usage: "local address to listen on and send from (required unless --listen-any)"},
			{Name: "listen-any", Usage: "take VXLAN on every address of the host (no --local)", Bool: true},
			{Name: "peers", Usage: "IP:PORT[,IP:PORT...]: take frames only from these sources (default: any port of a remote)"},
		}}
}

func (vxlanKind) Plan(s *Spec) (Plan, error) {
	o := s.Options
	cfg, err := ParseVXLAN(o["remote"], o["vni"], o["port"], o["local"])
	if err == nil {
		cfg.Peers, err = ParsePeers(o["peers"], cfg.Remotes)
	}
	if err != nil {
		return Plan{}, fmt.Errorf("tux %s: %v", s.Name, err)
	}
	if err := cfg.checkHost(s.Name); err != nil {
		return Plan{}, err
	}
	port := strconv.Itoa(int(cfg.Port))
	for _, t := range s.Others {
		if t.Kind == "vxlan" && cfg.clashes(port, t.Options) {
			return Plan{}, fmt.Errorf("vxlan %s: UDP port %s is taken by vxlan tux %s; give each vxlan tux of a host its own --port (or its own --local address), the same at the other ends", s.Name, port, t.Name)
		}
	}
	// VXLAN carries lans unauthenticated: taking it from every address
	// of the host is a choice to make explicitly.
	if !cfg.Local.IsValid() && o["listen-any"] != "true" {
		return Plan{}, fmt.Errorf("tux %s: give --local IP (the address of this host to take VXLAN on), or --listen-any to take it on every address", s.Name)
	}
	a := cfg.Args()
	shown := []Option{{"remote", a[1]}, {"vni", a[3]}, {"port", a[5]}}
	if cfg.Local.IsValid() {
		shown = append(shown, Option{"local", cfg.Local.String()})
	} else {
		shown = append(shown, Option{"listen-any", "true"})
	}
	if len(cfg.Peers) > 0 {
		shown = append(shown, Option{"peers", cfg.PeersString()})
	}
	return Plan{Args: a, Shown: shown}, nil
}

// checkHost checks the local address and a route to each remote.
func (cfg VXLANConfig) checkHost(name string) error {
	network := "udp4"
	if cfg.V6() {
		network = "udp6"
	}
	var laddr *net.UDPAddr
	if cfg.Local.IsValid() {
		laddr = &net.UDPAddr{IP: cfg.Local.AsSlice()}
		c, err := net.ListenUDP(network, laddr)
		if err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return fmt.Errorf("vxlan %s: local %s is not an address of this host (in the switch's network namespace); give one of its addresses or leave --local out", name, cfg.Local)
			}
			return fmt.Errorf("vxlan %s: local %s: %v", name, cfg.Local, err)
		}
		c.Close()
	}
	for _, r := range cfg.Remotes {
		// A UDP connect sends nothing; it only looks the route up.
		c, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(r, cfg.Port)))
		if err != nil {
			return fmt.Errorf("vxlan %s: remote %s is unreachable from this host (%v); check the address and the routes (ip route get %s)", name, r, errors.Unwrap(err), r)
		}
		c.Close()
	}
	return nil
}

// clashes says whether another vxlan tux (its shown options) listens on
// the same UDP port and family and an overlapping local address.
func (cfg VXLANConfig) clashes(port string, other []Option) bool {
	var tp, tl, tr string
	for _, op := range other {
		switch op.Name {
		case "port":
			tp = op.Value
		case "local":
			tl = op.Value
		case "remote":
			tr = op.Value
		}
	}
	sameFamily := strings.Contains(tr, ":") == cfg.V6()
	return tp == port && sameFamily && (tl == "" || !cfg.Local.IsValid() || tl == cfg.Local.String())
}

// SwitchConn: the switch sends and receives the datagrams itself
// (vxlan_conn.go) on a UDP socket bound at the first launch and kept
// for the tux's life; a port taken by anything else fails here, with
// its own sentence.
func (vxlanKind) SwitchConn(sock *net.UnixConn, h *Helper) (fabric.Conn, error) {
	x, err := h.keepEngine(func() (io.Closer, error) {
		cfg, err := parseVXLANArgs(h.plan.Args)
		if err != nil {
			return nil, err
		}
		e, err := newVXLAN(cfg)
		if err != nil {
			return nil, err
		}
		x := engineCloser{e, make(chan struct{})}
		if len(e.remotes) > 1 {
			go e.sweep(x.stop)
		}
		return x, nil
	})
	if err != nil {
		return nil, err
	}
	e := x.(engineCloser).e
	h.setLocalStats(e.stats)
	return newVXConn(e, sock, h.spec.MACs), nil
}

func (vxlanKind) setup(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	return setupVXLAN(args, c, sw)
}
