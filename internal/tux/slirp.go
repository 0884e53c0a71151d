package tux

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
	"github.com/sirupsen/logrus"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
)

// The slirp helper: gvisor-tap-vsock's virtual network (a user-space
// TCP/IP stack with DHCP, DNS, NAT and port forwards) on a switch port.
// Addresses follow QEMU's user network (DESIGN section 9): in 10.0.2.0/24
// the gateway .2 is the host (connections to it reach the host's
// loopback), .3 answers DNS (relayed to the host's resolver; the
// gateway's own DNS on .2:53 answers too) and leases start at .15.
// Leases are kept in a state file, so a relaunched helper gives every
// guest its address back; forwards are re-sent by the switch.

// slirpKind is add_tux kind="slirp" [subnet="CIDR"].
type slirpKind struct{}

func (slirpKind) Name() string { return "slirp" }
func (slirpKind) Usage() Usage {
	return Usage{Short: "a NAT network (DHCP, DNS, the host at .2, forwards), QEMU's 10.0.2.0/24 plan unless --subnet",
		Flags: []Flag{{Name: "subnet", Usage: "IPv4 subnet (default " + DefaultSubnet + "; gateway .2, DNS .3, leases from .15)"}}}
}

func (slirpKind) Plan(s *Spec) (Plan, error) {
	subnet := s.Options["subnet"]
	if subnet == "" {
		subnet = DefaultSubnet
	}
	plan, err := PlanFor(subnet)
	if err != nil {
		return Plan{}, err
	}
	leases := filepath.Join(s.Dir, s.Name+".leases")
	args := []string{"--subnet", plan.Subnet.String(), "--state", leases}
	// The gateway refuses guests the lab's own ports (slirp_guard.go).
	if s.Listeners != "" {
		args = append(args, "--listeners", s.Listeners)
	}
	if s.HostPorts != "" {
		args = append(args, "--host-ports", s.HostPorts)
	}
	return Plan{
		Args:  args,
		Shown: []Option{{"subnet", plan.Subnet.String()}, {"gateway", plan.Gateway.String()}, {"dns", plan.DNS.String()}},
		Fresh: []string{leases},
	}, nil
}

func (slirpKind) forwards() {}

func (slirpKind) SwitchConn(sock *net.UnixConn, h *Helper) (fabric.Conn, error) {
	return streamConn(sock), nil
}

func (slirpKind) setup(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	return setupSlirp(args, c, sw)
}

// DefaultSubnet is QEMU's user network.
const DefaultSubnet = "10.0.2.0/24"

// firstLease is the host number of the first DHCP lease (.15 in QEMU).
const firstLease = 15

// reservedMAC marks pool entries no guest may get.
const reservedMAC = "reserved"

// SlirpPlan is the address plan of a subnet.
type SlirpPlan struct {
	Subnet  *net.IPNet
	Gateway net.IP // host number 2
	DNS     net.IP // host number 3
	First   net.IP // first lease, host number 15
}

// PlanFor checks a subnet and derives its plan: IPv4, room for .15 and
// more (prefix /8 to /27).
func PlanFor(cidr string) (*SlirpPlan, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("subnet %q: want an IPv4 CIDR such as %s", cidr, DefaultSubnet)
	}
	ones, bits := n.Mask.Size()
	if ip.To4() == nil || bits != 32 {
		return nil, fmt.Errorf("subnet %q: only IPv4 subnets are supported", cidr)
	}
	if ones < 8 || ones > 27 {
		return nil, fmt.Errorf("subnet %q: the prefix must be /8 to /27 (the plan needs hosts .2, .3 and leases from .15)", cidr)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("subnet %q: host bits are set; did you mean %s?", cidr, n.String())
	}
	return &SlirpPlan{Subnet: n, Gateway: hostN(n, 2), DNS: hostN(n, 3), First: hostN(n, firstLease)}, nil
}

func hostN(n *net.IPNet, i uint32) net.IP {
	v := binary.BigEndian.Uint32(n.IP.To4()) + i
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

func broadcast(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	for i := range ip {
		ip[i] = n.IP.To4()[i] | ^n.Mask[i]
	}
	return ip
}

// hostResolver is the first IPv4 nameserver of the host, where .3 relays.
func hostResolver() string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && ip.To4() != nil {
				return ip.String()
			}
		}
	}
	return ""
}

type slirpHelper struct {
	vn    *virtualnetwork.VirtualNetwork
	mux   http.Handler
	plan  *SlirpPlan
	state *os.File // the lease file, opened before the helper drops root
	mu    sync.Mutex
	saved map[string]string
	guard *hostGuard
}

func setupSlirp(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	fs := flag.NewFlagSet("slirp", flag.ContinueOnError)
	subnet := fs.String("subnet", DefaultSubnet, "IPv4 subnet")
	state := fs.String("state", "", "file keeping the DHCP leases")
	listeners := fs.String("listeners", "", "dir of the lab's listener records (ports the gateway refuses)")
	hostPorts := fs.String("host-ports", "", "allow-list of host ports the gateway reaches (22,8000-8999 or none; default every port but the lab's)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	plan, err := PlanFor(*subnet)
	if err != nil {
		return nil, nil, err
	}
	allow, err := proto.ParsePorts(*hostPorts)
	if err != nil {
		return nil, nil, fmt.Errorf("--host-ports %v", err)
	}
	logrus.SetOutput(os.Stderr)
	logrus.SetLevel(logrus.WarnLevel)
	gw := plan.Gateway.To4()
	leases := map[string]string{}
	// Hosts .1 and .3 to .14 and the broadcast address are never leased,
	// so the first guest gets .15 as with QEMU.
	for i := uint32(1); i < firstLease; i++ {
		if i != 2 {
			leases[hostN(plan.Subnet, i).String()] = reservedMAC
		}
	}
	leases[broadcast(plan.Subnet).String()] = reservedMAC
	saved := loadLeases(*state)
	var stateF *os.File
	if *state != "" {
		// Opened now: the helper runs as nobody from here on (privs.go).
		if stateF, err = os.OpenFile(*state, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600); err != nil {
			return nil, nil, fmt.Errorf("slirp lease file: %v", err)
		}
	}
	for ip, mac := range saved {
		if p := net.ParseIP(ip); p != nil && plan.Subnet.Contains(p) {
			leases[ip] = mac
		}
	}
	nat := map[string]string{plan.Gateway.String(): "127.0.0.1"}
	if r := hostResolver(); r != "" {
		nat[plan.DNS.String()] = r
	}
	cfg := &types.Configuration{
		Subnet:            plan.Subnet.String(),
		GatewayIP:         plan.Gateway.String(),
		GatewayMacAddress: fmt.Sprintf("52:55:%02x:%02x:%02x:%02x", gw[0], gw[1], gw[2], gw[3]),
		MTU:               1500,
		NAT:               nat,
		GatewayVirtualIPs: []string{plan.DNS.String()},
		DHCPStaticLeases:  leases,
		// Names for the host in the gateway's DNS, as podman's
		// containers.internal: host.cloonix.internal is the gateway.
		DNS: []types.Zone{{Name: "cloonix.internal.", Records: []types.Record{
			{Name: "host", IP: plan.Gateway}, {Name: "gateway", IP: plan.Gateway}, {Name: "dns", IP: plan.DNS},
		}}},
		Forwards: map[string]string{},
	}
	vn, err := virtualnetwork.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("slirp network %s: %v", plan.Subnet, err)
	}
	guard := newHostGuard(plan, nat, allow, *listeners, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	h := &slirpHelper{vn: vn, mux: vn.ServicesMux(), plan: plan, state: stateF, saved: saved, guard: guard}
	go h.keepLeases()
	return h, map[string]string{"subnet": plan.Subnet.String(), "gateway": plan.Gateway.String(), "dns": plan.DNS.String()}, nil
}

func loadLeases(path string) map[string]string {
	m := map[string]string{}
	if path == "" {
		return m
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// call runs one request on the services mux in process.
func (h *slirpHelper) call(method, path string, body any) (int, string) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	h.mux.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// leases returns the guests' leases (ip -> mac), without the reserved.
func (h *slirpHelper) leases() map[string]string {
	code, body := h.call("GET", "/leases", nil)
	m := map[string]string{}
	if code == 200 {
		_ = json.Unmarshal([]byte(body), &m)
	}
	for ip, mac := range m {
		if mac == reservedMAC || ip == h.plan.Gateway.String() {
			delete(m, ip)
		}
	}
	return m
}

// keepLeases writes the leases to the state file when they change. The
// file is rewritten in place through the descriptor opened as root: a
// torn write (helper killed mid-way) reads back as no leases, which only
// costs the guests their old addresses.
func (h *slirpHelper) keepLeases() {
	if h.state == nil {
		return
	}
	for range time.Tick(300 * time.Millisecond) {
		m := h.leases()
		h.mu.Lock()
		changed := !reflect.DeepEqual(m, h.saved)
		if changed {
			h.saved = m
		}
		h.mu.Unlock()
		if changed {
			b, _ := json.Marshal(m)
			if _, err := h.state.WriteAt(b, 0); err == nil {
				_ = h.state.Truncate(int64(len(b)))
			}
		}
	}
}

// unprivileged: the slirp needs no privilege once set up (privs.go).
func (h *slirpHelper) unprivileged() {}

// CheckForward validates a forward's addresses: HOSTADDR:PORT on the host
// and an IP:PORT guest address.
func CheckForward(proto, host, guest string) error {
	if proto != "tcp" && proto != "udp" {
		return fmt.Errorf("forward protocol %q: use tcp or udp", proto)
	}
	hh, hp, err := net.SplitHostPort(host)
	if err != nil || !validPort(hp) || (hh != "" && net.ParseIP(hh) == nil) {
		return fmt.Errorf("forward host address %q: want HOSTADDR:PORT such as 127.0.0.1:2222", host)
	}
	if guest == "" {
		return nil
	}
	gh, gp, err := net.SplitHostPort(guest)
	if err != nil || !validPort(gp) || net.ParseIP(gh) == nil || net.ParseIP(gh).To4() == nil {
		return fmt.Errorf("forward guest address %q: want GUESTIP:PORT such as 10.0.2.15:22", guest)
	}
	return nil
}

// CheckForwardPublic refuses a forward's host address beyond loopback
// (0.0.0.0, "", a host address) unless public is set: a forward there
// opens a guest's port to the network, which is the user's call to make
// explicitly (ctrl forward add --public).
func CheckForwardPublic(host string, public bool) error {
	hh, _, err := net.SplitHostPort(host)
	if err != nil {
		return fmt.Errorf("forward host address %q: want HOSTADDR:PORT such as 127.0.0.1:2222", host)
	}
	if ip := net.ParseIP(hh); (ip != nil && ip.IsLoopback()) || public {
		return nil
	}
	return fmt.Errorf("forward host address %s is not a loopback address: the guest's port would be open to the network; use 127.0.0.1:PORT, or add --public if that is what you want", host)
}

// validPort accepts 1..65535 written plainly.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && strconv.Itoa(n) == p && n > 0 && n <= 65535
}

func (h *slirpHelper) handle(r Request) error {
	switch r.Op {
	case "forward_add":
		if err := CheckForward(r.Proto, r.Host, r.Guest); err != nil {
			return err
		}
		gip := net.ParseIP(strings.Split(r.Guest, ":")[0])
		if !h.plan.Subnet.Contains(gip) {
			return fmt.Errorf("forward guest address %s is outside this slirp's subnet %s", r.Guest, h.plan.Subnet)
		}
		code, body := h.call("POST", "/services/forwarder/expose", types.ExposeRequest{Local: r.Host, Remote: r.Guest, Protocol: types.TransportProtocol(r.Proto)})
		if code != 200 {
			if strings.Contains(body, "address already in use") {
				return fmt.Errorf("forward %s %s: the host port is already in use; choose another HOSTADDR:PORT", r.Proto, r.Host)
			}
			return fmt.Errorf("forward %s %s -> %s: %s", r.Proto, r.Host, r.Guest, body)
		}
		return nil
	case "forward_del":
		code, body := h.call("POST", "/services/forwarder/unexpose", types.UnexposeRequest{Local: r.Host, Protocol: types.TransportProtocol(r.Proto)})
		if code != 200 {
			return fmt.Errorf("forward %s %s: %s", r.Proto, r.Host, body)
		}
		return nil
	}
	return fmt.Errorf("a slirp tux has no %q", r.Op)
}

func (h *slirpHelper) stats() Stats {
	return Stats{State: "up", RxBytes: h.vn.BytesReceived(), TxBytes: h.vn.BytesSent()}
}

func (h *slirpHelper) serve(sw net.Conn) error {
	err := h.vn.AcceptQemu(context.Background(), &guardConn{Conn: sw, g: h.guard})
	if err == nil {
		err = errors.New("switch connection closed")
	}
	return err
}
