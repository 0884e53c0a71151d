package daemon

import (
	"bufio"
	"encoding/binary"
	"encoding/xml"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Frames through the daemon's stream and datagram ports: sizes, a port
// deleted while busy, a peer that does not read.

var (
	macA = []byte{0x52, 0x54, 0, 0, 0, 0xa}
	macB = []byte{0x52, 0x54, 0, 0, 0, 0xb}
)

func frameTo(dst, src []byte, seq uint32) []byte {
	f := make([]byte, 60)
	copy(f, dst)
	copy(f[6:], src)
	f[12], f[13] = 0x88, 0xb5
	binary.BigEndian.PutUint32(f[14:], seq)
	return f
}

func bcastFrame(src []byte, seq uint32) []byte {
	return frameTo([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src, seq)
}

// peer is an external program on a raw stream port.
type peer struct {
	c net.Conn
	r *bufio.Reader
}

func (s *testSwitch) streamPeer(name, lan string) *peer {
	s.t.Helper()
	out := s.must("add_port", "name", name, "kind", "stream")
	var p struct {
		Socket string `xml:"socket,attr"`
	}
	_ = xml.Unmarshal(out, &p)
	s.must("attach", "port", name, "lan", lan)
	c, err := net.Dial("unix", p.Socket)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	waitFor(s.t, name+" connected", func() bool { return s.d.Fab.Port(name).Connected() })
	return &peer{c: c, r: bufio.NewReader(c)}
}

func (p *peer) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (p *peer) send(t *testing.T, f []byte) {
	t.Helper()
	p.sendRaw(t, binary.BigEndian.AppendUint32(nil, uint32(len(f))))
	p.sendRaw(t, f)
}

// expect reads frames until one carries seq.
func (p *peer) expect(t *testing.T, seq uint32) {
	t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
			t.Fatalf("waiting for frame %d: %v", seq, err)
		}
		f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(p.r, f); err != nil {
			t.Fatal(err)
		}
		if len(f) >= 18 && binary.BigEndian.Uint32(f[14:]) == seq {
			return
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamFrameSizes: under 14 bytes is skipped (counted, peer stays);
// over 65535 ends that peer only, which may reconnect.
func TestStreamFrameSizes(t *testing.T) {
	s := startSwitch(t)
	a, b := s.streamPeer("a", "lan"), s.streamPeer("b", "lan")
	pa := s.d.Fab.Port("a")
	a.sendRaw(t, []byte{0, 0, 0, 5, 1, 2, 3, 4, 5})
	a.sendRaw(t, []byte{0, 0, 0, 0})
	a.send(t, bcastFrame(macA, 1))
	b.expect(t, 1)
	if d := pa.Counters().Drops; d != 2 || !pa.Connected() {
		t.Errorf("after two short frames: drops %d connected %v", d, pa.Connected())
	}
	// The largest frame passes whole.
	big := bcastFrame(macA, 2)
	big = append(big, make([]byte, 65535-len(big))...)
	a.send(t, big)
	b.expect(t, 2)
	a.sendRaw(t, []byte{0, 1, 0, 0}) // 65536
	waitFor(t, "port a dropped its peer", func() bool { return !pa.Connected() })
	if !s.d.Fab.Port("b").Connected() {
		t.Error("b lost its peer because of a")
	}
	// Reconnect to the same port.
	c, err := net.Dial("unix", filepath.Join(s.cfg.PortsDir(), "a.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a2 := &peer{c: c, r: bufio.NewReader(c)}
	waitFor(t, "a reconnected", pa.Connected)
	a2.send(t, bcastFrame(macA, 3))
	b.expect(t, 3)
}

// TestDgramFrameSizes: a datagram port answers the address it last heard
// from, counts bad sizes as drops and is connected only once a peer spoke.
func TestDgramFrameSizes(t *testing.T) {
	s := startSwitch(t)
	b := s.streamPeer("b", "lan")
	out := s.must("add_port", "name", "d", "kind", "dgram")
	var p struct {
		Socket string `xml:"socket,attr"`
	}
	_ = xml.Unmarshal(out, &p)
	s.must("attach", "port", "d", "lan", "lan")
	pd := s.d.Fab.Port("d")
	if pd.Connected() {
		t.Error("dgram port connected before any peer spoke")
	}
	local := filepath.Join(s.cfg.WorkDir, "peer.sock")
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: p.Socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(make([]byte, 13))
	_, _ = c.Write(make([]byte, 70000))
	_, _ = c.Write(bcastFrame(macA, 1))
	b.expect(t, 1)
	waitFor(t, "dgram port connected", pd.Connected)
	if d := pd.Counters().Drops; d < 1 {
		t.Errorf("dgram drops %d, want the bad sizes counted", d)
	}
	// And back: b to the dgram peer.
	b.send(t, frameTo(macA, macB, 2))
	buf := make([]byte, 70000)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || n != 60 || binary.BigEndian.Uint32(buf[14:]) != 2 {
		t.Fatalf("dgram peer read %d %v", n, err)
	}
}

// TestDelPortWhileBusy: deleting a port with a peer sending frees
// everything and leaves the others switching.
func TestDelPortWhileBusy(t *testing.T) {
	s := startSwitch(t)
	a, b := s.streamPeer("a", "lan"), s.streamPeer("b", "lan")
	_ = s.streamPeer("c", "lan")
	stop := make(chan struct{})
	go func() {
		for i := uint32(100); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := bcastFrame(macA, i)
			if _, err := a.c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)); err != nil {
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	s.must("del_port", "name", "c")
	if _, err := os.Stat(filepath.Join(s.cfg.PortsDir(), "c.sock")); err == nil {
		t.Error("c.sock left behind")
	}
	close(stop)
	a.send(t, bcastFrame(macA, 1))
	b.expect(t, 1)
}

// TestSlowPeer: a stream peer that never reads fills its socket, then its
// port's queue, and loses frames there alone; the sender never waits and
// the other peer on the lan gets every frame.
func TestSlowPeer(t *testing.T) {
	s := startSwitch(t)
	a, b := s.streamPeer("a", "lan"), s.streamPeer("b", "lan")
	_ = s.streamPeer("deaf", "lan") // never reads
	got := make(chan uint32, 1<<16)
	go func() {
		_ = b.c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
				close(got)
				return
			}
			f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			if _, err := io.ReadFull(b.r, f); err != nil {
				close(got)
				return
			}
			got <- binary.BigEndian.Uint32(f[14:])
		}
	}()
	const n, burst = 20000, 200
	big := make([]byte, 1400)
	for i := 0; i < n; i += burst {
		var out []byte
		for k := i; k < i+burst; k++ {
			f := append(bcastFrame(macA, uint32(k)), big...)
			out = append(binary.BigEndian.AppendUint32(out, uint32(len(f))), f...)
		}
		_ = a.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := a.c.Write(out); err != nil {
			t.Fatalf("the sender was held up: %v", err)
		}
		for k := i; k < i+burst; k++ {
			select {
			case v, ok := <-got:
				if !ok || v != uint32(k) {
					t.Fatalf("b got %d (open %v), want %d", v, ok, k)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("b stalled at frame %d behind a deaf peer", k)
			}
		}
	}
	deaf := s.d.Fab.Port("deaf").Counters()
	if deaf.Drops == 0 || s.d.Fab.Port("b").Counters().Drops != 0 {
		t.Errorf("drops: deaf %d, b %d; want some and none", deaf.Drops, s.d.Fab.Port("b").Counters().Drops)
	}
	t.Logf("deaf peer: %d frames taken by its socket or queue, %d dropped", deaf.TxFrames, deaf.Drops)
}
