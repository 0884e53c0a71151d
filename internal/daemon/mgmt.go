package daemon

import (
	"fmt"
	"net/netip"
	"strings"

	"cloonix/internal/mgmt"
	"cloonix/internal/mgmt/hostif"
	"cloonix/internal/proto"
)

// The management network (internal/mgmt, docs/automation.md): a lan of
// the switch's own that users cannot name, with the host's tap on it
// and each guest's mgmt0. It shows in `list` as .vms[].mgmt and .mgmt,
// not among the lans and ports, and no verb may attach, detach or delete
// any of it: nothing joins it to the lans.

// Names of the management lan and the host's port: ':' keeps them out of
// reach of user names (proto.CheckName refuses it).
const (
	mgmtLan      = "mgmt:lan"
	mgmtHostPort = "mgmt:host"
	mgmtPortTail = ":" + "mgmt0"
)

// mgmtState is the switch's management network; net is nil when off.
type mgmtState struct {
	net   *mgmt.Net
	iface *hostif.Iface
}

// startMgmt creates the host's interface and the management lan; a
// failure stops the switch from starting, with the way out in the error.
func (d *Daemon) startMgmt() error {
	n, err := mgmt.Parse(d.Cfg.Mgmt)
	if err != nil || n == nil {
		return err
	}
	allow, err := mgmt.ParseAllow(d.Cfg.MgmtAllow)
	if err != nil {
		return err
	}
	ifc, err := hostif.OpenIface(mgmt.IfName(d.Cfg.WorkDir), n, allow)
	if err != nil {
		return err
	}
	p, err := d.Fab.AddPort(mgmtHostPort, "tap")
	if err == nil {
		err = d.Fab.AddLan(mgmtLan)
	}
	if err == nil {
		err = d.Fab.Attach(mgmtHostPort, mgmtLan)
	}
	if err != nil {
		ifc.Close()
		return fmt.Errorf("management network: %v", err)
	}
	p.SetConn(ifc)
	d.mgmt = mgmtState{net: n, iface: ifc}
	d.OnStop(func() { _ = d.Fab.DelPort(mgmtHostPort) })
	return nil
}

// isMgmtPort tells a port of the management lan.
func isMgmtPort(port string) bool {
	return port == mgmtHostPort || strings.HasSuffix(port, mgmtPortTail)
}

// mgmtGuard refuses a verb that would touch the management network.
func mgmtGuard(port, lan string) error {
	if lan == mgmtLan || isMgmtPort(port) {
		return fmt.Errorf("%s is the management network's (mgmt0 of every guest, set by <mgmt> in the config); it cannot be attached, detached or deleted", strings.Trim(port+" "+lan, " "))
	}
	return nil
}

// mgmtIP checks add_vm's mgmt_ip before anything changes.
func (d *Daemon) mgmtIP(vm, ip string) (netip.Addr, error) {
	if ip == "" {
		return netip.Addr{}, nil
	}
	if d.mgmt.net == nil {
		return netip.Addr{}, fmt.Errorf("vm %s: --mgmt-ip %s: the management network is off (<mgmt> in the config)", vm, ip)
	}
	a, err := d.mgmt.net.Check(ip)
	if err != nil {
		return a, fmt.Errorf("vm %s: %v", vm, err)
	}
	return a, nil
}

// mgmtAssign gives vm its address ("ADDR/LEN", "" when the network is
// off or its kind has no mgmt0: a kind offers one by setting
// Spec.MgmtSock): want if given, else derived from its name. The VM
// table's lock is held, so held lists every address in use.
func (d *Daemon) mgmtAssign(vm string, want netip.Addr, kindHasMgmt bool, held map[string]bool) (string, error) {
	n := d.mgmt.net
	if n == nil {
		return "", nil
	}
	if !kindHasMgmt {
		if want.IsValid() {
			return "", fmt.Errorf("vm %s: --mgmt-ip: this node kind has no management interface yet", vm)
		}
		return "", nil
	}
	if want.IsValid() {
		if held[want.String()] {
			return "", fmt.Errorf("vm %s: management address %s is another guest's; choose another or leave --mgmt-ip out", vm, want)
		}
		return n.WithLen(want), nil
	}
	a, err := n.Derive(vm, func(a netip.Addr) bool { return held[a.String()] })
	if err != nil {
		return "", fmt.Errorf("vm %s: %v", vm, err)
	}
	return n.WithLen(a), nil
}

// listMgmt hides the management lan and ports from the lists (each VM
// shows its address instead) and tells the network.
func (d *Daemon) listMgmt(lab *proto.Lab) {
	ports := lab.Ports[:0]
	for _, p := range lab.Ports {
		if !isMgmtPort(p.Name) {
			ports = append(ports, p)
		}
	}
	lab.Ports = ports
	lans := lab.Lans[:0]
	for _, l := range lab.Lans {
		if l.Name != mgmtLan {
			lans = append(lans, l)
		}
	}
	lab.Lans = lans
	if n := d.mgmt.net; n != nil {
		lab.Mgmt = &proto.Mgmt{Net: n.Prefix.String(), Host: n.Host().String(), Ifname: d.mgmt.iface.Name}
	}
}
