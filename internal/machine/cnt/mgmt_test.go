package cnt

import (
	"net"
	"strings"
	"testing"
)

func TestMgmtTapName(t *testing.T) {
	m := mgmtTapName("/w/r1")
	if len(m) > 15 || m == mgmtTapName("/w/r2") || m != mgmtTapName("/w/r1") {
		t.Fatalf("mgmt tap %q: want a stable name of at most 15 bytes, one per node", m)
	}
	for i := 0; i < MaxEths; i++ {
		if tapName("/w/r1", i) == m {
			t.Fatalf("eth%d and mgmt0 share the tap name %s", i, m)
		}
	}
}

func TestCheckMgmt(t *testing.T) {
	mac, _ := net.ParseMAC("02:c0:01:02:03:04")
	mcast, _ := net.ParseMAC("03:c0:01:02:03:04")
	for _, c := range []struct {
		tap, addr string
		mac       net.HardwareAddr
		err       string
	}{
		{"", "", nil, ""},
		{"cnx", "172.30.0.5/24", mac, ""},
		{"cnx", "172.30.0.5", mac, "want IPv4 ADDR/LEN"},
		{"cnx", "fd00::5/64", mac, "want IPv4 ADDR/LEN"},
		{"", "172.30.0.5/24", mac, "without its tap"},
		{"cnx", "172.30.0.5/24", nil, "not a unicast"},
		{"cnx", "172.30.0.5/24", mcast, "not a unicast"},
	} {
		s := Spec{Name: "n", MgmtTap: c.tap, MgmtAddr: c.addr, MgmtMAC: c.mac}
		err := s.checkMgmt()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%+v: got %v, want %q", c, err, c.err)
		}
	}
}
