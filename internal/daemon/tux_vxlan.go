package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"cloonix/internal/proto"
	"cloonix/internal/tux"
)

// The vxlan tux (package tux, vxlan.go): add_tux kind="vxlan"
// remote="IP[,IP...]" vni="N" [port="4789"] [local="IP"]. Everything that
// can be checked before the helper starts is checked here: the values,
// the local address, a route to each remote and the UDP port against
// this switch's other vxlan tux. The helper then binds the port; a port
// taken by anything else fails there, with its own sentence.

func init() {
	registerTuxKind("vxlan", []string{"remote", "vni", "port", "local"}, vxlanOptions)
}

func vxlanOptions(d *Daemon, name string, o map[string]string) (args, env []string, shown []proto.Option, err error) {
	cfg, err := tux.ParseVXLAN(o["remote"], o["vni"], o["port"], o["local"])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tux %s: %v", name, err)
	}
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
				return nil, nil, nil, fmt.Errorf("vxlan %s: local %s is not an address of this host (in the switch's network namespace); give one of its addresses or leave --local out", name, cfg.Local)
			}
			return nil, nil, nil, fmt.Errorf("vxlan %s: local %s: %v", name, cfg.Local, err)
		}
		c.Close()
	}
	for _, r := range cfg.Remotes {
		// A UDP connect sends nothing; it only looks the route up.
		c, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(r, cfg.Port)))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("vxlan %s: remote %s is unreachable from this host (%v); check the address and the routes (ip route get %s)", name, r, errors.Unwrap(err), r)
		}
		c.Close()
	}
	port := strconv.Itoa(int(cfg.Port))
	d.tuxMu.Lock()
	for _, t := range d.tuxes() {
		if t.kind != "vxlan" {
			continue
		}
		var tp, tl, tr string
		for _, op := range t.opts {
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
		if tp == port && sameFamily && (tl == "" || !cfg.Local.IsValid() || tl == cfg.Local.String()) {
			d.tuxMu.Unlock()
			return nil, nil, nil, fmt.Errorf("vxlan %s: UDP port %s is taken by vxlan tux %s; give each vxlan tux of a host its own --port (or its own --local address), the same at the other ends", name, port, t.name)
		}
	}
	d.tuxMu.Unlock()
	a := cfg.Args()
	shown = []proto.Option{{Name: "remote", Value: a[1]}, {Name: "vni", Value: a[3]}, {Name: "port", Value: a[5]}}
	if cfg.Local.IsValid() {
		shown = append(shown, proto.Option{Name: "local", Value: cfg.Local.String()})
	}
	return a, nil, shown, nil
}
