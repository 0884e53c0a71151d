package tux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"cloonix/internal/wire"
)

func TestParseVXLAN(t *testing.T) {
	for _, c := range []struct {
		remote, vni, port, local string
		err                      string // substring; "" = ok
		want                     string // Args joined, when ok
	}{
		{"10.0.0.2", "42", "", "", "", "--remote 10.0.0.2 --vni 42 --port 4789"},
		{"10.0.0.2, 10.0.0.3", "0", "8472", "10.0.0.1", "", "--remote 10.0.0.2,10.0.0.3 --vni 0 --port 8472 --local 10.0.0.1"},
		{"fd00::2", "16777215", "", "", "", "--remote fd00::2 --vni 16777215 --port 4789"},
		{"::ffff:10.0.0.2", "1", "", "", "", "--remote 10.0.0.2 --vni 1 --port 4789"},
		{"", "1", "", "", "needs --remote", ""},
		{"host.example", "1", "", "", "not an IP address", ""},
		{"10.0.0.2,", "1", "", "", "not an IP address", ""},
		{"0.0.0.0", "1", "", "", "unspecified", ""},
		{"239.1.1.1", "1", "", "", "multicast", ""},
		{"255.255.255.255", "1", "", "", "broadcast", ""},
		{"10.0.0.2,10.0.0.2", "1", "", "", "twice", ""},
		{"10.0.0.2,fd00::2", "1", "", "", "mix of IPv4 and IPv6", ""},
		{"fe80::1%eth0", "1", "", "", "not an IP address", ""},
		{"10.0.0.2", "", "", "", "needs --vni", ""},
		{"10.0.0.2", "16777216", "", "", "out of range", ""},
		{"10.0.0.2", "-1", "", "", "out of range", ""},
		{"10.0.0.2", "0x10", "", "", "out of range", ""},
		{"10.0.0.2", "1", "0", "", "give 1 to 65535", ""},
		{"10.0.0.2", "1", "65536", "", "give 1 to 65535", ""},
		{"10.0.0.2", "1", "http", "", "give 1 to 65535", ""},
		{"10.0.0.2", "1", "", "nope", "not an IP address", ""},
		{"10.0.0.2", "1", "", "fd00::1", "different families", ""},
		{"10.0.0.2", "1", "", "10.0.0.2", "its own remote", ""},
		{"10.0.0.2", "1", "", "224.0.0.1", "unicast", ""},
	} {
		cfg, err := ParseVXLAN(c.remote, c.vni, c.port, c.local)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseVXLAN(%q,%q,%q,%q) = %v; want error with %q", c.remote, c.vni, c.port, c.local, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseVXLAN(%q,%q,%q,%q): %v", c.remote, c.vni, c.port, c.local, err)
			continue
		}
		if got := strings.Join(cfg.Args(), " "); got != c.want {
			t.Errorf("ParseVXLAN(%q,...).Args() = %q; want %q", c.remote, got, c.want)
		}
	}
}

func TestDecodeVXLAN(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	good := make([]byte, VXLANHdrLen+len(frame))
	putVXLANHdr(good, 0xabcdef)
	copy(good[VXLANHdrLen:], frame)
	if !bytes.Equal(good[:8], []byte{0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0}) {
		t.Fatalf("header % x: want RFC 7348 layout", good[:8])
	}
	reserved := append([]byte(nil), good...)
	reserved[0], reserved[1], reserved[3], reserved[7] = 0xff, 0x12, 0x34, 0x56 // R bits set: ignored
	noI := append([]byte(nil), good...)
	noI[0] = 0xf7
	for _, c := range []struct {
		name string
		p    []byte
		vni  uint32
		err  error
	}{
		{"good", good, 0xabcdef, nil},
		{"reserved bits ignored", reserved, 0xabcdef, nil},
		{"I flag clear", noI, 0, errVXFlags},
		{"empty", nil, 0, errVXShort},
		{"header only", good[:8], 0, errVXShort},
		{"inner shorter than Ethernet", good[:8+13], 0, errVXShort},
		{"inner exactly Ethernet", good[:8+14], 0xabcdef, nil},
	} {
		vni, f, err := DecodeVXLAN(c.p)
		if err != c.err || vni != c.vni {
			t.Errorf("%s: vni %#x err %v; want %#x %v", c.name, vni, err, c.vni, c.err)
		}
		if err == nil && !bytes.Equal(f, c.p[8:]) {
			t.Errorf("%s: frame is not the payload after the header", c.name)
		}
	}
}

func FuzzVXLANDecode(f *testing.F) {
	g := make([]byte, VXLANHdrLen+14)
	putVXLANHdr(g, 7)
	f.Add(g)
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		vni, fr, err := DecodeVXLAN(p)
		if err != nil {
			if fr != nil || vni != 0 {
				t.Fatal("error with a frame")
			}
			return
		}
		if vni > MaxVNI || len(fr) < 14 || len(fr) != len(p)-VXLANHdrLen || p[0]&vxlanFlagI == 0 {
			t.Fatalf("accepted %x: vni %d frame %d bytes", p, vni, len(fr))
		}
		// What we encode for that VNI decodes to the same VNI and frame.
		q := make([]byte, len(p))
		putVXLANHdr(q, vni)
		copy(q[VXLANHdrLen:], fr)
		v2, f2, err := DecodeVXLAN(q)
		if err != nil || v2 != vni || !bytes.Equal(f2, fr) {
			t.Fatalf("re-encoding %x: %v %d", p, err, v2)
		}
	})
}

// vxFreePort returns a UDP port free on loopback now.
func vxFreePort(t *testing.T) uint16 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// vxStart runs a vxlan tux's engine and its switch-side conn in the
// test (vxPump stands for the switch's port); it returns the test's end
// of a stream connection to that port.
func vxStart(t *testing.T, remote, vni, port, local string) (*vxlanHelper, net.Conn) {
	t.Helper()
	// The test's frames go to MACs 02:00:00:00:00:01 and :02, as if
	// behind a tap of the switch: they take super frames.
	macs := &wire.MACSet{}
	for _, m := range []byte{1, 2} {
		macs.Learn(vxTestFrame(0xff, m, 14))
	}
	return vxStartWith(t, macs, remote, vni, port, local)
}

// vxStartWith is vxStart with the switch's set of MACs that take super
// frames.
func vxStartWith(t *testing.T, macs *wire.MACSet, remote, vni, port, local string) (*vxlanHelper, net.Conn) {
	t.Helper()
	cfg, err := ParseVXLAN(remote, vni, port, local)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newVXLAN(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	go vxPump(newVXConn(h, b, macs), b)
	t.Cleanup(func() { a.Close(); h.conn.Close() })
	return h, a
}

// vxPump moves frames between the conn and a stream connection as the
// fabric would: WriteFrame for every frame read, Flush when none is
// buffered; ReadFrame written out, flushed when the conn has no more.
func vxPump(c *vxConn, sw net.Conn) {
	go func() {
		rd := wire.NewFrameReader(sw, wire.FrameReaderSize, minInnerFrame, wire.MaxStreamFrame)
		for {
			f, ok, err := rd.TryNext()
			if err != nil {
				c.Close()
				return
			}
			if !ok {
				_ = c.Flush() // before the buffer is read again
				if rd.Refill() != nil {
					c.Close()
					return
				}
				continue
			}
			_ = c.WriteFrame(f)
		}
	}()
	w := bufio.NewWriter(sw)
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		_ = wire.BufferFrame(w, f.Bytes())
		f.Release()
		if c.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

func vxSend(t *testing.T, c net.Conn, f []byte) {
	t.Helper()
	b := make([]byte, 4+len(f))
	binary.BigEndian.PutUint32(b, uint32(len(f)))
	copy(b[4:], f)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func vxRecv(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lb [4]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		t.Fatal(err)
	}
	f := make([]byte, binary.BigEndian.Uint32(lb[:]))
	if _, err := io.ReadFull(c, f); err != nil {
		t.Fatal(err)
	}
	return f
}

func vxTestFrame(dst, src byte, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x08, 0x00})
	if dst == 0xff {
		copy(f, bytes.Repeat([]byte{0xff}, 6))
	}
	for i := 14; i < n; i++ {
		f[i] = byte(i)
	}
	return f
}

// Two helpers on 127.0.0.1 and 127.0.0.2, the same port: frames cross
// both ways whole, counted.
func TestVXLANPair(t *testing.T) {
	port := vxFreePort(t)
	hA, a := vxStart(t, "127.0.0.2", "100", vxItoa(port), "127.0.0.1")
	hB, b := vxStart(t, "127.0.0.1", "100", vxItoa(port), "127.0.0.2")
	for _, n := range []int{14, 60, 1514, 9014, 65499} {
		f := vxTestFrame(2, 1, n)
		vxSend(t, a, f)
		if g := vxRecv(t, b); !bytes.Equal(g, f) {
			t.Fatalf("A->B %d bytes: got %d bytes, different", n, len(g))
		}
		f = vxTestFrame(1, 2, n)
		vxSend(t, b, f)
		if g := vxRecv(t, a); !bytes.Equal(g, f) {
			t.Fatalf("B->A %d bytes: got %d bytes, different", n, len(g))
		}
	}
	// Too long for one datagram: counted, never truncated; the next
	// frame still goes.
	vxSend(t, a, vxTestFrame(2, 1, 65500))
	vxSend(t, a, vxTestFrame(2, 1, 100))
	if g := vxRecv(t, b); len(g) != 100 {
		t.Fatalf("after the oversize frame B got %d bytes; want the 100-byte one", len(g))
	}
	// The sender counts after its send returns: wait for it.
	var sa, sb Stats
	for range 100 {
		if sa, sb = hA.stats(), hB.stats(); sa.TxFrames == 6 && sb.TxFrames == 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sa.TxFrames != 6 || sb.RxFrames != 6 || sb.TxFrames != 5 || sa.RxFrames != 5 {
		t.Errorf("counters A %+v B %+v", sa, sb)
	}
	if sa.Drops != 1 || !strings.Contains(sa.State, "1 oversize") {
		t.Errorf("A's oversize frame: %+v", sa)
	}
}

func vxItoa(n uint16) string { return strconv.Itoa(int(n)) }

// A raw UDP socket plays the remote: what it sends wrongly is dropped
// and counted by reason; what it sends right arrives.
func TestVXLANDropsMalformed(t *testing.T) {
	port := vxFreePort(t)
	h, sw := vxStart(t, "127.0.0.3", "7", vxItoa(port), "127.0.0.1")
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	dg := func(vni uint32, f []byte) []byte {
		b := make([]byte, VXLANHdrLen+len(f))
		putVXLANHdr(b, vni)
		copy(b[VXLANHdrLen:], f)
		return b
	}
	f := vxTestFrame(1, 3, 60)
	noI := dg(7, f)
	noI[0] = 0
	for _, d := range []struct {
		c *net.UDPConn
		b []byte
	}{
		{peer, []byte{0x08}},                 // short
		{peer, dg(7, f)[:8+10]},              // short inner frame
		{peer, noI},                          // flags
		{peer, dg(8, f)},                     // vni
		{stranger, dg(7, f)},                 // source
		{peer, dg(7, vxTestFrame(1, 3, 61))}, // good
	} {
		if _, err := d.c.WriteToUDP(d.b, dst); err != nil {
			t.Fatal(err)
		}
	}
	if g := vxRecv(t, sw); len(g) != 61 {
		t.Fatalf("got a %d-byte frame; want only the good 61-byte one", len(g))
	}
	// The receiver counts a batch after passing its frames on: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for h.stats().RxFrames < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s := h.stats()
	want := "up (dropped: 2 short, 1 flags, 1 vni, 1 source)"
	if s.State != want || s.Drops != 5 || s.RxFrames != 1 {
		t.Errorf("stats %+v; want state %q, 5 drops, 1 rx", s, want)
	}
	// And the helper still answers: a frame from the switch reaches the peer.
	vxSend(t, sw, f)
	buf := make([]byte, 2000)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from.Port != int(port) {
		t.Errorf("sent from port %d; want the tux's own %d", from.Port, port)
	}
	vni, g, err := DecodeVXLAN(buf[:n])
	if err != nil || vni != 7 || !bytes.Equal(g, f) {
		t.Errorf("peer got vni %d %v", vni, err)
	}
}

// Three ends: broadcast and unknown unicast go to both remotes; once a
// MAC is heard behind one remote, frames to it go there only.
func TestVXLANReplicationAndLearning(t *testing.T) {
	port := vxFreePort(t)
	_, sw := vxStart(t, "127.0.0.5,127.0.0.6", "9", vxItoa(port), "127.0.0.1")
	var peers [2]*net.UDPConn
	for i := range peers {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(5+i)), Port: int(port)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		peers[i] = c
	}
	got := func(i int) []byte {
		buf := make([]byte, 2000)
		_ = peers[i].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := peers[i].ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		_, f, _ := DecodeVXLAN(buf[:n])
		return f
	}
	for _, f := range [][]byte{vxTestFrame(0xff, 1, 60), vxTestFrame(0x66, 1, 60)} {
		vxSend(t, sw, f)
		for i := range peers {
			if g := got(i); !bytes.Equal(g, f) {
				t.Fatalf("remote %d did not get a flooded frame to %x", i, f[:6])
			}
		}
	}
	// Peer 1 speaks for MAC ..:66.
	b := make([]byte, VXLANHdrLen+60)
	putVXLANHdr(b, 9)
	copy(b[VXLANHdrLen:], vxTestFrame(1, 0x66, 60))
	if _, err := peers[1].WriteToUDP(b, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	vxRecv(t, sw)
	f := vxTestFrame(0x66, 1, 70)
	vxSend(t, sw, f)
	if g := got(1); !bytes.Equal(g, f) {
		t.Fatal("remote 1 did not get the frame to the MAC learnt behind it")
	}
	if g := got(0); g != nil {
		t.Fatal("remote 0 got a frame to a MAC learnt behind remote 1")
	}
}

func TestVXLANPortInUse(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	cfg, _ := ParseVXLAN("127.0.0.2", "1", vxItoa(port), "127.0.0.1")
	if _, err := newVXLAN(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("bind to a taken port: %v; want 'in use'", err)
	}
	cfg, _ = ParseVXLAN("127.0.0.2", "1", vxItoa(port), "192.0.2.77")
	if _, err := newVXLAN(cfg); err == nil || !strings.Contains(err.Error(), "not an address of this host") {
		t.Fatalf("bind to a foreign local: %v", err)
	}
}

// vxTCPFrame is an IPv4 TCP frame carrying payload (checksums left as
// a super frame's: not final).
func vxTCPFrame(payload []byte) []byte {
	b := make([]byte, 14+20+20+len(payload))
	copy(b, []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 5001)
	binary.BigEndian.PutUint16(tcp[2:], 5002)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = 5<<4, 0x18
	copy(tcp[20:], payload)
	return b
}

// A TCP super frame (as a tap hands the switch) leaves as 1500-byte
// frames with full checksums, sent with UDP GSO and received with GRO on
// loopback; the other side gets the payload whole and in order. A burst
// of ordinary frames goes the same way.
func TestVXLANSuperFrameAndGSO(t *testing.T) {
	port := vxFreePort(t)
	hA, a := vxStart(t, "127.0.0.8", "11", vxItoa(port), "127.0.0.7")
	hB, b := vxStart(t, "127.0.0.7", "11", vxItoa(port), "127.0.0.8")
	payload := make([]byte, 60000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	vxSend(t, a, vxTCPFrame(payload))
	var got []byte
	seq := uint32(1000)
	merged := 0
	for len(got) < len(payload) {
		f := vxRecv(t, b)
		ti, ok := parseTCP(f)
		if !ok {
			t.Fatal("a segment is not TCP")
		}
		if s := binary.BigEndian.Uint32(f[ti.l4+4:]); s != seq {
			t.Fatalf("segment seq %d, want %d", s, seq)
		}
		if len(f) > StdFrame {
			// The receiver merged segments into a super frame: partial
			// checksum, right IP header.
			merged++
			if binary.BigEndian.Uint16(f[ti.l4+16:]) != pseudoSum(f, ti, len(f)-ti.l4) || checksum.Checksum(f[ti.l3:ti.l4], 0) != 0xffff {
				t.Fatalf("super frame at seq %d: IP checksum wrong or TCP checksum not the pseudo-header sum", seq)
			}
		} else if !vxChecksumsOK(f, ti) {
			t.Fatalf("segment at seq %d: bad checksums", seq)
		}
		p := f[ti.hdrEnd():]
		got = append(got, p...)
		seq += uint32(len(p))
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload differs after segmentation")
	}
	if merged == 0 {
		t.Error("the receiver merged no segments")
	}
	// A burst of equal frames, then a shorter one (a GSO run and its end).
	for i := range 100 {
		f := vxTestFrame(2, 1, 1000)
		f[20] = byte(i)
		vxSend(t, a, f)
	}
	vxSend(t, a, vxTestFrame(2, 1, 500))
	for i := range 100 {
		if f := vxRecv(t, b); len(f) != 1000 || f[20] != byte(i) {
			t.Fatalf("burst frame %d: %d bytes, mark %d", i, len(f), f[20])
		}
	}
	if f := vxRecv(t, b); len(f) != 500 {
		t.Fatalf("the short frame after the burst: %d bytes", len(f))
	}
	if s := hA.stats(); s.Drops != 0 {
		t.Fatalf("sender: %+v", s)
	}
	// Debian 12's kernel (6.1) has both offloads on loopback.
	if hA.gsoSends.Load() == 0 || hB.groRecvs.Load() == 0 {
		t.Errorf("GSO sends %d (enabled %v), GRO receives %d (enabled %v)", hA.gsoSends.Load(), hA.gsoOK, hB.groRecvs.Load(), hB.gro)
	}
}

// vxChecksumsOK checks the IPv4 header and TCP checksums of a frame.
func vxChecksumsOK(f []byte, ti tcpInfo) bool {
	sum := func(b []byte, init uint32) uint32 {
		for i := 0; i+1 < len(b); i += 2 {
			init += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			init += uint32(b[len(b)-1]) << 8
		}
		return init
	}
	fold := func(s uint32) uint16 {
		for s>>16 != 0 {
			s = s&0xffff + s>>16
		}
		return uint16(s)
	}
	if fold(sum(f[ti.l3:ti.l4], 0)) != 0xffff {
		return false
	}
	ip := f[ti.l3:]
	ps := sum(ip[12:20], 0) + 6 + uint32(len(f)-ti.l4)
	return fold(sum(f[ti.l4:], ps)) == 0xffff
}
