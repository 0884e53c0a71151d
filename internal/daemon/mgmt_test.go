package daemon

import (
	"net/netip"
	"strings"
	"testing"

	"cloonix/internal/config"
	"cloonix/internal/mgmt"
	"cloonix/internal/mgmt/hostif"
	"cloonix/internal/proto"
)

func TestMgmtGuardAndAssign(t *testing.T) {
	for _, tc := range []struct{ port, lan string }{{"r1:mgmt0", "l1"}, {"p", mgmtLan}, {mgmtHostPort, "l1"}, {"", mgmtLan}} {
		if err := mgmtGuard(tc.port, tc.lan); err == nil || !strings.Contains(err.Error(), "management network") {
			t.Errorf("mgmtGuard(%q, %q) = %v", tc.port, tc.lan, err)
		}
	}
	if err := mgmtGuard("r1:eth0", "l1"); err != nil {
		t.Errorf("an ordinary attach refused: %v", err)
	}
	d := New(&config.Config{NetworkName: "t", WorkDir: t.TempDir()})
	if a, err := d.mgmtAssign("r1", netip.Addr{}, true, nil); a != "" || err != nil {
		t.Fatalf("network off: %q %v", a, err)
	}
	if _, err := d.mgmtIP("r1", "172.30.0.5"); err == nil || !strings.Contains(err.Error(), "off") {
		t.Fatalf("--mgmt-ip with the network off: %v", err)
	}
	d.mgmt.net, _ = mgmt.Parse("172.30.0.0/24")
	a1, err := d.mgmtAssign("r1", netip.Addr{}, true, map[string]bool{})
	if err != nil || !strings.HasSuffix(a1, "/24") {
		t.Fatalf("derived %q %v", a1, err)
	}
	held := map[string]bool{strings.TrimSuffix(a1, "/24"): true}
	if a2, _ := d.mgmtAssign("r1", netip.Addr{}, true, held); a2 == a1 {
		t.Fatalf("a held address given again: %s", a2)
	}
	want, err := d.mgmtIP("r2", "172.30.0.77")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.mgmtAssign("r2", want, true, map[string]bool{"172.30.0.77": true}); err == nil {
		t.Fatal("a taken --mgmt-ip accepted")
	}
	if a, err := d.mgmtAssign("c1", netip.Addr{}, false, nil); a != "" || err != nil {
		t.Fatalf("a kind without mgmt0: %q %v", a, err)
	}
	for _, bad := range []string{"172.30.1.5", "172.30.0.1", "x"} {
		if _, err := d.mgmtIP("r3", bad); err == nil {
			t.Errorf("--mgmt-ip %s accepted", bad)
		}
	}
	d.mgmt.iface = &hostif.Iface{Name: "clxmtest"}
	lab := &proto.Lab{Ports: []proto.Port{{Name: "r1:mgmt0"}, {Name: mgmtHostPort}, {Name: "r1:eth0"}}, Lans: []proto.Lan{{Name: mgmtLan}, {Name: "l1"}}}
	d.listMgmt(lab)
	if len(lab.Ports) != 1 || len(lab.Lans) != 1 || lab.Mgmt == nil || lab.Mgmt.Host != "172.30.0.1" || lab.Mgmt.Ifname != "clxmtest" {
		t.Fatalf("list: %+v", lab)
	}
}
