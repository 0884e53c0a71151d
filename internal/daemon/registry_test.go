package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloonix/internal/proto"
)

// TestOnlyLansAndPorts: a switch built from the core, lans and ports
// alone serves them (frames cross a lan between two raw ports) and knows
// nothing of the features left out.
func TestOnlyLansAndPorts(t *testing.T) {
	s := startSwitchWith(t, CoreFeature(), LansFeature(), PortsFeature())
	c := s.client()
	var pa, pb proto.PortReply
	for _, r := range []struct {
		req   proto.Request
		reply any
	}{
		{&proto.AddLan{Name: "l"}, nil},
		{&proto.AddPort{Name: "a", Kind: "dgram"}, &pa},
		{&proto.AddPort{Name: "b", Kind: "dgram"}, &pb},
		{&proto.Attach{Port: "a", Lan: "l"}, nil},
		{&proto.Attach{Port: "b", Lan: "l"}, nil},
	} {
		if err := c.Do(r.req, r.reply); err != nil {
			t.Fatalf("%s: %v", r.req.Verb(), err)
		}
	}
	lab, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(lab.Lans) != 1 || strings.Join(lab.Lans[0].Ports, ",") != "a,b" || len(lab.VMs) != 0 || len(lab.Tux) != 0 {
		t.Errorf("list: %+v", lab)
	}
	// A frame from a's peer reaches b's peer. The switch learns a dgram
	// peer's address from its first datagram, and the two ports are read
	// by their own goroutines: a's frames are sent again until b's hello
	// has been seen and one reaches b.
	ea, eb := dgramPeer(t, pa.Socket), dgramPeer(t, pb.Socket)
	frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5}, make([]byte, 50)...)
	if _, err := eb.Write(frame); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	got := false
	for i := 0; i < 100 && !got; i++ {
		if _, err := ea.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = eb.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := eb.Read(buf)
		got = err == nil && n == len(frame)
	}
	if !got {
		t.Fatal("no frame from a's peer reached b's peer through lan l")
	}
	for _, verb := range []string{"add_vm", "add_tux", "impair", "capture", "set_pos"} {
		_, err := c.Call(verb, map[string]string{"name": "x"})
		if err == nil || !strings.Contains(err.Error(), "unknown request") {
			t.Errorf("%s on a lans-and-ports switch: %v", verb, err)
		}
	}
	if err := c.Do(&proto.AddPort{Name: "u", Kind: "bess"}, nil); err == nil || !strings.Contains(err.Error(), "use stream or dgram") {
		t.Errorf("a bess port without the vms feature: %v", err)
	}
}

// dgramPeer is a datagram socket talking to a dgram port's socket.
func dgramPeer(t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	local := filepath.Join(t.TempDir(), "peer.sock")
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); os.Remove(local) })
	return c
}

// TestFeaturesDistinct: the full switch's features register each verb
// and port kind once (install panics otherwise).
func TestFeaturesDistinct(t *testing.T) {
	d := New(nil)
	for _, v := range []string{"add_lan", "add_port", "add_vm", "exec", "add_tux", "forward_add", "impair", "capture", "set_pos", "list", "ping", "stop", "subscribe"} {
		if d.verbs[v] == nil {
			t.Errorf("verb %s missing from the full switch", v)
		}
	}
	for _, k := range []string{"bess", "daemon"} {
		if d.listenKinds[k] == nil {
			t.Errorf("port kind %s missing", k)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a verb given twice did not panic")
		}
	}()
	NewWith(nil, LansFeature(), LansFeature())
}
