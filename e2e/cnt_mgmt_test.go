package e2e

import (
	"cloonix/internal/proto"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Container nodes on the management network (docs/automation.md,
// docs/containers.md): mgmt0 is a tap moved into the node, with its
// stable address; the host reaches it, the host's filter holds for it.

// hostListen listens on the host's management address; accepted tells
// whether a connection came in.
func hostListen(t *testing.T, host string, port int) (int, chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

func TestCntMgmt(t *testing.T) {
	needRunc(t)
	needImages(t, "debian-frr.img")
	for _, p := range []string{"ssh", "ssh-keygen", "ping"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/debian-packages.txt: make deps)", p)
		}
	}
	mnet := freeMgmtNet(t)
	key := filepath.Join(t.TempDir(), "id_rsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	allowed := freePort(t)
	l := NewLab(t, fmt.Sprintf("<mgmt>%s</mgmt><mgmt_allow>%d</mgmt_allow><rsa_public_key>%s.pub</rsa_public_key><no_nat>true</no_nat>", mnet, allowed, key))
	given := mnet.Addr().Next().Next().Next().Next().Next().Next().Next().Next().Next().Next() // .10
	l.addVMs([]string{"c1"}, "--type", "cnt", "--rootfs", "debian-frr")
	l.addVMs([]string{"c2"}, "--type", "cnt", "--rootfs", "debian-frr", "--mgmt-ip", given.String())
	lab := l.List()
	if lab.Mgmt == nil {
		t.Fatal("ctrl list --json: no mgmt")
	}
	addrs := map[string]string{}
	for _, n := range []string{"c1", "c2"} {
		v := vmOf(lab, n)
		p, err := netip.ParsePrefix(v.Mgmt)
		if err != nil || !mnet.Contains(p.Addr()) || p.Bits() != mnet.Bits() || p.Addr() == netip.MustParseAddr(lab.Mgmt.Host) {
			t.Fatalf("vm %s: .mgmt %q is not a guest's ADDR/%d in %s", n, v.Mgmt, mnet.Bits(), mnet)
		}
		addrs[n] = p.Addr().String()
	}
	if addrs["c2"] != given.String() {
		t.Fatalf("c2 added with --mgmt-ip %s has %s", given, addrs["c2"])
	}
	m := &mgmtLab{l: l, lab: lab, addrs: addrs, allowed: allowed}
	t.Run("mgmt0", m.mgmt0)
	t.Run("ping", m.ping)
	t.Run("host filter", m.hostFilter)
	t.Run("inventory", m.inventory)
	t.Run("ssh", func(t *testing.T) {
		m.sshHostname(t, "c1")
		m.sshHostname(t, "c2")
	})
	t.Run("stop start", func(t *testing.T) {
		m.l.MustRun("ctrl", "stop", "vm", "c1")
		m.l.MustRun("ctrl", "start", "vm", "c1", "--wait")
		if got := vmOf(m.l.List(), "c1").Mgmt; got != vmOf(m.lab, "c1").Mgmt {
			t.Fatalf("c1's mgmt after stop/start: %q, was %q", got, vmOf(m.lab, "c1").Mgmt)
		}
		m.ping(t)
		m.sshHostname(t, "c1")
	})
	t.Run("crash start", func(t *testing.T) {
		// A crash frees the node's ports; start makes them again, mgmt0's
		// on the management lan.
		if err := syscall.Kill(vmOf(m.l.List(), "c1").Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 10*time.Second, "c1 crashed", func() error {
			if st := vmOf(m.l.List(), "c1").State; st != "crashed" {
				return fmt.Errorf("c1 is %s", st)
			}
			return nil
		})
		m.l.MustRun("ctrl", "start", "vm", "c1", "--wait")
		m.ping(t)
	})
	t.Run("resume", func(t *testing.T) {
		// The journal keeps c2's --mgmt-ip (<mgmt_ip>) and c1's derived
		// address comes back from its name.
		m.l.crashSwitch()
		if out := m.l.MustRun("start", "--resume"); !strings.Contains(out, "lab resumed: 2 guests running") {
			t.Fatalf("start --resume:\n%s", out)
		}
		for _, n := range []string{"c1", "c2"} {
			if got := vmOf(m.l.List(), n).Mgmt; got != vmOf(m.lab, n).Mgmt {
				t.Fatalf("%s's mgmt after resume: %q, was %q", n, got, vmOf(m.lab, n).Mgmt)
			}
		}
		m.ping(t)
		m.sshHostname(t, "c1")
	})
}

// mgmtLab is TestCntMgmt's lab: two cnt nodes on a management network.
type mgmtLab struct {
	l       *Lab
	lab     *proto.Lab        // as listed once both nodes were added
	addrs   map[string]string // node: management address
	allowed int               // the host port in <mgmt_allow>
}

// ping: the host pings every node on the management network.
func (m *mgmtLab) ping(t *testing.T) {
	for vm, a := range m.addrs {
		if out, err := exec.Command("ping", "-c", "2", "-W", "5", a).CombinedOutput(); err != nil {
			t.Errorf("the host pings %s at %s: %v\n%s", vm, a, err, out)
		}
	}
}

// mgmt0: c1's mgmt0 has its address and MAC, no default route, no
// forwarding, and eth0 is still there.
func (m *mgmtLab) mgmt0(t *testing.T) {
	out := m.l.vmMust("c1", "ip", "-o", "-4", "addr", "show", "dev", "mgmt0")
	if !strings.Contains(out, " "+vmOf(m.lab, "c1").Mgmt+" ") {
		t.Errorf("c1's mgmt0 is not %s: %s", vmOf(m.lab, "c1").Mgmt, out)
	}
	if out := m.l.vmMust("c1", "ip", "link", "show", "dev", "mgmt0"); !strings.Contains(out, "link/ether 02:c0:") {
		t.Errorf("c1's mgmt0 has not its 02:c0: MAC: %s", out)
	}
	if out := m.l.vmMust("c1", "ip", "route", "show", "default"); strings.Contains(out, "mgmt0") {
		t.Errorf("a default route through mgmt0: %s", out)
	}
	if out := m.l.vmMust("c1", "cat", "/proc/sys/net/ipv4/conf/mgmt0/forwarding"); strings.TrimSpace(out) != "0" {
		t.Errorf("forwarding on mgmt0 is %q, want 0", out)
	}
	if out := m.l.vmMust("c1", "ls", "/sys/class/net"); !strings.Contains(out, "eth0") {
		t.Errorf("c1 lost eth0: %s", out)
	}
}

// hostFilter: a node reaches the host's ports in <mgmt_allow> only.
func (m *mgmtLab) hostFilter(t *testing.T) {
	host := m.lab.Mgmt.Host
	closed, acc := hostListen(t, host, 0)
	out, _ := m.l.Run("exec", "c1", "--", "sh", "-c", fmt.Sprintf("nc -z -w 3 %s %d && echo OPEN || echo CLOSED", host, closed))
	if !strings.Contains(out, "CLOSED") {
		t.Fatalf("a node opened the host's %s:%d (not in <mgmt_allow>) through mgmt0: %s", host, closed, out)
	}
	select {
	case <-acc:
		t.Fatal("the host's listener accepted a node's connection")
	default:
	}
	_, acc = hostListen(t, host, m.allowed)
	out, _ = m.l.Run("exec", "c2", "--", "sh", "-c", fmt.Sprintf("nc -z -w 3 %s %d && echo OPEN || echo CLOSED", host, m.allowed))
	if !strings.Contains(out, "OPEN") {
		t.Fatalf("a node cannot open the host's %s:%d, in <mgmt_allow>: %s", host, m.allowed, out)
	}
	<-acc
}

// inventory: every format lists both nodes at their addresses.
func (m *mgmtLab) inventory(t *testing.T) {
	js := m.l.MustRun("inventory", "--format", "json")
	ans := m.l.MustRun("inventory", "--format", "ansible")
	sc := m.l.MustRun("inventory", "--format", "ssh-config")
	for _, n := range []string{"c1", "c2"} {
		if !strings.Contains(js, `"address": "`+m.addrs[n]+`"`) {
			t.Errorf("inventory --format json has no %s at %s:\n%s", n, m.addrs[n], js)
		}
		if !strings.Contains(ans, m.addrs[n]) {
			t.Errorf("inventory --format ansible has no %s at %s:\n%s", n, m.addrs[n], ans)
		}
		if !strings.Contains(sc, "Host "+n+"\n") || !strings.Contains(sc, m.addrs[n]) {
			t.Errorf("inventory --format ssh-config has no %s at %s:\n%s", n, m.addrs[n], sc)
		}
	}
}

// sshHostname runs hostname on vm over ssh with the inventory's config.
func (m *mgmtLab) sshHostname(t *testing.T, vm string) {
	// OpenSSH closes inherited descriptors before it reads -F: a file.
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	cmd := exec.Command("bash", "-c", fmt.Sprintf("%s -c %s inventory --format ssh-config > %s && ssh -F %s -o BatchMode=yes -o ConnectTimeout=20 %s hostname", bin, m.l.Config, cfg, cfg, vm))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != vm {
		t.Fatalf("ssh -F FILE %s hostname, FILE from cloonix inventory --format ssh-config: %v\n%s", vm, err, out)
	}
}
