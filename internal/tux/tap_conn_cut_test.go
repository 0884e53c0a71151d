package tux

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/wire"
)

// cutConn is a node's TapConn without a descriptor, to cut and learn.
func cutConn(macs *wire.MACSet) *TapConn {
	return &TapConn{o: TapOptions{MTU: 1500, MACs: macs, Hold: true}, scratch: make([]byte, fabric.MaxFrame), held: map[uint64]bool{}}
}

// tcpFrame is an Ethernet/IPv4/TCP frame (20-byte headers, optionally a
// VLAN tag) with n bytes of payload and full checksums.
func tcpFrame(n int, vlan bool) []byte {
	var b []byte
	b = append(b, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1)
	if vlan {
		b = append(b, 0x81, 0, 0, 5)
	}
	b = append(b, 0x08, 0)
	l3 := len(b)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+n))
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip, 0))
	b = append(b, ip...)
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 5000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12], tcp[13] = 5<<4, 0x18
	b = append(b, tcp...)
	for i := 0; i < n; i++ {
		b = append(b, byte(i*7))
	}
	setTCPCsum(b, l3, false)
	return b
}

// setTCPCsum writes the TCP checksum: full, or the pseudo-header sum
// only (partial, as a kernel leaves it for offload).
func setTCPCsum(b []byte, l3 int, partial bool) {
	l4 := l3 + 20
	ph := make([]byte, 12)
	copy(ph, b[l3+12:l3+20])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(len(b)-l4))
	ps := checksum.Checksum(ph, 0)
	b[l4+16], b[l4+17] = 0, 0
	if partial {
		binary.BigEndian.PutUint16(b[l4+16:], ps)
		return
	}
	binary.BigEndian.PutUint16(b[l4+16:], ^checksum.Checksum(b[l4:], ps))
}

func TestGSOHeader(t *testing.T) {
	h := make([]byte, 10)
	for _, c := range []struct {
		name string
		b    []byte
		want []byte // flags, type, hdrLen, gsoSize, csumStart, csumOffset
	}{
		{"ordinary frame", tcpFrame(1400, false), make([]byte, 10)},
		{"super frame", tcpFrame(30000, false), []byte{1, hosttap.GSOTCPv4, 54, 0, 0xb4, 0x05, 34, 0, 16, 0}},
		{"super frame, vlan", tcpFrame(30000, true), []byte{1, hosttap.GSOTCPv4, 58, 0, 0xb4, 0x05, 38, 0, 16, 0}},
		{"big, not TCP", append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5}, make([]byte, 3000)...), make([]byte, 10)},
	} {
		h[0] = 99
		gsoHeader(h, c.b, 1500)
		if !bytes.Equal(h, c.want) {
			t.Errorf("%s: header % x, want % x", c.name, h, c.want)
		}
	}
}

// TestCutAndLearn checks a super frame from a node's tap is cut into
// ordinary frames with full checksums unless its destination was learnt
// on another node's tap, and that a closed tap forgets its MAC.
func TestCutAndLearn(t *testing.T) {
	super := tcpFrame(6000, false)
	setTCPCsum(super, 14, true)
	macs := &wire.MACSet{} // one daemon's
	a := cutConn(macs)
	a.cut(super, 1448)
	if len(a.pending) != 5 {
		t.Fatalf("%d segments, want 5", len(a.pending))
	}
	total := 0
	for _, f := range a.pending {
		b := f.Bytes()
		if len(b) > StdFrame {
			t.Fatalf("segment of %d bytes", len(b))
		}
		ref := append([]byte(nil), b...)
		setTCPCsum(ref, 14, false)
		if !bytes.Equal(ref, b) {
			t.Fatal("a segment's TCP checksum is not full")
		}
		total += len(b) - 54
		f.Release()
	}
	if total != 6000 {
		t.Fatalf("segments carry %d bytes, want 6000", total)
	}
	// A GSO header asking for tiny segments (a guest's own, on a packet
	// socket) gets segments for the MTU, not thousands of frames.
	a.pending = a.pending[:0]
	if !a.cut(super, 1) || len(a.pending) != 5 {
		t.Fatalf("a 6000-byte super frame with an MSS of 1: %d segments, want 5", len(a.pending))
	}
	for _, f := range a.pending {
		f.Release()
	}
	if macs.TakesSuper(super) {
		t.Fatal("an unknown MAC takes super frames")
	}
	b := cutConn(macs)
	reply := tcpFrame(10, false)
	copy(reply[0:6], super[6:12])
	copy(reply[6:12], super[0:6]) // b's node sends from super's destination
	b.learn(reply)
	if !macs.TakesSuper(super) {
		t.Fatal("a MAC learnt on a node's tap does not take super frames")
	}
	a.pending = a.pending[:0]
	// Too long for the switch (a 64 KiB IP packet) but going to a node:
	// cut into super frames that fit, partial checksums kept.
	huge := tcpFrame(65400, false)
	copy(huge[0:6], super[0:6])
	setTCPCsum(huge, 14, true)
	a.cut(huge, 1448)
	total = 0
	for _, f := range a.pending {
		if n := len(f.Bytes()); n > 65535 || (n <= StdFrame && len(a.pending) > 1 && f != a.pending[len(a.pending)-1]) {
			t.Fatalf("piece of %d bytes", n)
		}
		total += len(f.Bytes()) - 54
		f.Release()
	}
	if len(a.pending) != 2 || total != 65400 {
		t.Fatalf("%d pieces carrying %d bytes, want 2 carrying 65400", len(a.pending), total)
	}
	b.closed.Store(true)
	b.forget()
	b.lastSrc = 0 // learn again: a closed tap must not
	b.learn(reply)
	if macs.TakesSuper(super) {
		t.Fatal("a closed tap's MAC still takes super frames")
	}
	// A tap tux's conn learns for good: its MACs stay after it closes.
	tx := cutConn(macs)
	tx.o.Hold = false
	tx.learn(reply)
	tx.closed.Store(true)
	tx.forget()
	if !macs.TakesSuper(super) {
		t.Fatal("a MAC learnt on a tap tux was forgotten when it closed")
	}
}

// FuzzTapFrames feeds guest-made bytes to what parses them on the way to
// or from a node's tap: the GSO header for a frame, the cutting of a
// super frame, the checksum completion. None may panic or write out of
// bounds.
func FuzzTapFrames(f *testing.F) {
	f.Add(tcpFrame(3000, false), uint16(1448), uint16(34), uint16(16))
	f.Add(tcpFrame(3000, true), uint16(0), uint16(38), uint16(16))
	f.Add([]byte{1, 2, 3}, uint16(1), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, mss, start, off uint16) {
		if len(b) > 70000 {
			return
		}
		gsoHeader(make([]byte, 10), b, 1500)
		c := cutConn(&wire.MACSet{})
		if len(b) >= 14 {
			c.cut(append([]byte(nil), b...), 536+int(mss)%9000) // the kernel gives the MSS
			for _, fr := range c.pending {
				if n := len(fr.Bytes()); n > 65535 {
					t.Fatalf("piece of %d bytes", n)
				}
				fr.Release()
			}
			c.pending = c.pending[:0]
		}
		CompleteChecksum(append([]byte(nil), b...), int(start), int(off))
	})
}

// TestTapWriteNow: frames written inline (WriteNow) go out at once and in
// order; when the descriptor has no room, the rest are kept and go out
// first at the next Flush or WriteFrame, after what was written before.
// A datagram socket pair stands for the tap: one writev, one frame.
func TestTapWriteNow(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	_ = unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	c, err := NewTapConn(os.NewFile(uintptr(fds[0]), "pair"), TapOptions{Name: "pair"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := func(i int) *fabric.Frame {
		f := fabric.NewFrame(200)
		b := f.Bytes()
		clear(b)
		binary.BigEndian.PutUint32(b[20:], uint32(i))
		return f
	}
	var fs []*fabric.Frame
	for i := range 400 { // far more than the pair holds
		fs = append(fs, frame(i))
	}
	kept, err := c.WriteNow(fs)
	if err != nil || !kept {
		t.Fatalf("WriteNow of 400 frames into a small buffer: kept %v, %v; want kept", kept, err)
	}
	for _, f := range fs {
		f.Release() // the frames are the caller's again
	}
	next := 0
	read := func() {
		b := make([]byte, 1024)
		for {
			n, err := unix.Read(fds[1], b)
			if err != nil {
				return
			}
			if n != hosttap.VnetHdrLen+200 {
				t.Fatalf("frame %d: %d bytes, want a header and 200", next, n)
			}
			if got := int(binary.BigEndian.Uint32(b[hosttap.VnetHdrLen+20:])); got != next {
				t.Fatalf("frame %d came as number %d", got, next)
			}
			next++
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.WriteFrame(frame(400).Bytes()) }() // waits for room, after the kept ones
	for end := time.Now().Add(5 * time.Second); next < 401; {
		if time.Now().After(end) {
			t.Fatalf("%d of 401 frames came", next)
		}
		read()
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if kept, err := c.WriteNow([]*fabric.Frame{frame(401)}); kept || err != nil {
		t.Fatalf("WriteNow with room: kept %v, %v", kept, err)
	}
	read()
	if next != 402 {
		t.Fatalf("%d frames, want 402", next)
	}
}
