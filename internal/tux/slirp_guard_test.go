package tux

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"cloonix/internal/proto"
)

// frame builds an Ethernet/IPv4 frame with a TCP or UDP header to dst:port.
func frame(proto byte, dst string, port int, frag uint16) []byte {
	f := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[6:], frag)
	ip[9] = proto
	copy(ip[12:16], net.ParseIP("10.0.2.15").To4())
	copy(ip[16:20], net.ParseIP(dst).To4())
	binary.BigEndian.PutUint16(ip[20:], 40000)
	binary.BigEndian.PutUint16(ip[22:], uint16(port))
	return f
}

// TestHostGuard (issue 15, finding 1): guests reach host ports through the
// gateway, except the lab's own listeners, whatever host address they use;
// with an allow-list, only its ports.
func TestHostGuard(t *testing.T) {
	plan, _ := PlanFor(DefaultSubnet)
	dir := t.TempDir()
	unreg := proto.RegisterListener(dir, "switch", 54321)
	// A record of a process that is gone counts for nothing.
	_ = os.WriteFile(filepath.Join(dir, "8080.graph.999999999"), nil, 0o600)
	hostIP := ""
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				hostIP = n.IP.String()
			}
		}
	}
	nat := map[string]string{"10.0.2.2": "127.0.0.1", "10.0.2.3": "127.0.0.53"}
	g := newHostGuard(plan, nat, nil, dir, nil)
	cases := []struct {
		name  string
		f     []byte
		allow bool
	}{
		{"control port via the gateway", frame(6, "10.0.2.2", 54321, 0), false},
		{"control port via the DNS address (NAT to a loopback resolver)", frame(6, "10.0.2.3", 54321, 0), false},
		{"control port at 127.0.0.1 itself", frame(6, "127.0.0.1", 54321, 0), false},
		{"control port at 0.0.0.0", frame(6, "0.0.0.0", 54321, 0), false},
		{"control port over UDP", frame(17, "10.0.2.2", 54321, 0), false},
		{"a fragment to the host", frame(6, "10.0.2.2", 80, 0x2000), false},
		{"another host port", frame(6, "10.0.2.2", 4713, 0), true},
		{"a dead process's record", frame(6, "10.0.2.2", 8080, 0), true},
		{"DNS at the gateway", frame(17, "10.0.2.2", 53, 0), true},
		{"the outside", frame(6, "192.0.2.7", 54321, 0), true},
		{"a fragment to the outside", frame(6, "192.0.2.7", 80, 0x2000), true},
		{"ICMP to the gateway", frame(1, "10.0.2.2", 0, 0), true},
	}
	if hostIP != "" {
		cases = append(cases, struct {
			name  string
			f     []byte
			allow bool
		}{"control port at the host's own address " + hostIP, frame(6, hostIP, 54321, 0), false})
	}
	for _, c := range cases {
		if got := g.pass(c.f); got != c.allow {
			t.Errorf("%s: pass=%v, want %v", c.name, got, c.allow)
		}
	}
	// A record counts from the moment it is made, and goes with its
	// listener, whatever the cache.
	unreg2 := proto.RegisterListener(dir, "graph", 8181)
	if g.pass(frame(6, "10.0.2.2", 8181, 0)) {
		t.Error("a listener registered just now is not refused")
	}
	unreg2()
	unreg()
	if !g.pass(frame(6, "10.0.2.2", 54321, 0)) {
		t.Error("port still refused after its listener went")
	}
	allow, _ := proto.ParsePorts("22,8000-8999")
	g = newHostGuard(plan, nat, allow, dir, nil)
	for port, want := range map[int]bool{22: true, 8500: true, 4713: false, 54321: false, 53: true} {
		proto := byte(6)
		if port == 53 {
			proto = 17
		}
		if got := g.pass(frame(proto, "10.0.2.2", port, 0)); got != want {
			t.Errorf("allow-list 22,8000-8999: port %d pass=%v, want %v", port, got, want)
		}
	}
}

// TestGuardConn: refused frames vanish from the stream, others pass whole.
func TestGuardConn(t *testing.T) {
	plan, _ := PlanFor(DefaultSubnet)
	dir := t.TempDir()
	defer proto.RegisterListener(dir, "switch", 54321)()
	a, b := net.Pipe()
	gc := &guardConn{Conn: a, g: newHostGuard(plan, map[string]string{"10.0.2.2": "127.0.0.1"}, nil, dir, nil)}
	good := frame(6, "10.0.2.2", 4713, 0)
	go func() {
		for _, f := range [][]byte{frame(6, "10.0.2.2", 54321, 0), good} {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
			_, _ = b.Write(append(hdr[:], f...))
		}
	}()
	got := make([]byte, 4+len(good))
	if _, err := io.ReadFull(gc, got); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(got) != uint32(len(good)) || string(got[4:]) != string(good) {
		t.Fatalf("stream after the guard: % x", got)
	}
	if gc.g.dropped.Load() != 1 {
		t.Fatalf("dropped %d, want 1", gc.g.dropped.Load())
	}
}

func FuzzHostGuard(f *testing.F) {
	f.Add(frame(6, "10.0.2.2", 54321, 0))
	f.Add([]byte{1, 2, 3})
	plan, _ := PlanFor(DefaultSubnet)
	g := newHostGuard(plan, map[string]string{"10.0.2.2": "127.0.0.1"}, nil, f.TempDir(), nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		if !g.pass(b) {
			g.drop(b)
		}
	})
}

// TestForwardPublic (issue 15, finding 12): a forward opens a guest's port
// beyond loopback only when asked to.
func TestForwardPublic(t *testing.T) {
	for _, c := range []struct {
		host   string
		public bool
		ok     bool
	}{
		{"127.0.0.1:2222", false, true}, {"[::1]:2222", false, true}, {"127.0.0.2:2222", false, true},
		{"0.0.0.0:2222", false, false}, {":2222", false, false}, {"192.0.2.1:2222", false, false}, {"[::]:2222", false, false},
		{"0.0.0.0:2222", true, true}, {":2222", true, true}, {"nonsense", true, false},
	} {
		if err := CheckForwardPublic(c.host, c.public); (err == nil) != c.ok {
			t.Errorf("%s public=%v: %v, want ok=%v", c.host, c.public, err, c.ok)
		}
	}
}
