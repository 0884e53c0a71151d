package tux

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/machine"
	"cloonix/internal/wire"
)

// testVnetHdr is a virtio_net_hdr: for a TCPv4 super frame cut at mss
// (partial checksum), or NEEDS_CSUM only (mss < 0), or empty (mss 0).
func testVnetHdr(mss int) []byte {
	h := make([]byte, 10)
	if mss != 0 {
		h[0] = hosttap.NeedsCsum
		binary.LittleEndian.PutUint16(h[6:], 34)
		binary.LittleEndian.PutUint16(h[8:], 16)
	}
	if mss > 0 {
		h[1] = hosttap.GSOTCPv4
		binary.LittleEndian.PutUint16(h[2:], 54)
		binary.LittleEndian.PutUint16(h[4:], uint16(mss))
	}
	return h
}

// readFrames reads frames from c until want payload bytes came (54-byte
// headers), or 2 s pass.
func readFrames(t *testing.T, c *TapConn, want int) [][]byte {
	t.Helper()
	var got [][]byte
	for n, end := 0, time.Now().Add(2*time.Second); n < want; {
		if time.Now().After(end) {
			t.Fatalf("%d of %d bytes read", n, want)
		}
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, append([]byte(nil), f.Bytes()...))
		n += f.N - 54
		f.Release()
	}
	return got
}

// TestVTapConn: a QEMU guest's port (a TapConn on the packet socket of
// its tap) completes a partial checksum, cuts a super frame for a MAC
// that takes none, passes it whole to one that does, cuts one longer than
// a switch frame into pieces that fit, and writes a super frame to the
// guest whole with its GSO header.
func TestVTapConn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	name := fmt.Sprintf("qvtest%d", os.Getpid()%100000)
	sock, release, err := machine.OpenVTap(name)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	macs := &wire.MACSet{}
	c, err := NewTapConn(sock, TapOptions{Name: name, MACs: macs, Hold: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tap, err := machine.VTapFile(name)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	guest := func(h, b []byte) { // what QEMU writes for its guest
		t.Helper()
		if _, err := unix.Writev(int(tap.Fd()), [][]byte{h, b}); err != nil {
			t.Fatal(err)
		}
	}

	small := tcpFrame(100, false)
	setTCPCsum(small, 14, true)
	guest(testVnetHdr(-1), small)
	if got := readFrames(t, c, 100); !bytes.Equal(got[0], tcpFrame(100, false)) {
		t.Fatal("a partial checksum was not completed")
	}

	super := tcpFrame(30000, false)
	setTCPCsum(super, 14, true)
	guest(testVnetHdr(1448), super)
	got := readFrames(t, c, 30000)
	if len(got) != 21 || len(got[0]) > StdFrame {
		t.Fatalf("toward a MAC taking no super frame: %d frames, the first of %d bytes; want 21 of at most %d", len(got), len(got[0]), StdFrame)
	}

	macs.Hold(wire.MACOf(super[0:6])) // the destination is another guest's tap
	guest(testVnetHdr(1448), super)
	if got := readFrames(t, c, 30000); len(got) != 1 || !bytes.Equal(got[0], super) {
		t.Fatalf("toward a MAC taking super frames: %d frames, want the super frame whole", len(got))
	}

	huge := tcpFrame(65495, false) // a 64 KiB IP packet: longer than a switch frame
	setTCPCsum(huge, 14, true)
	guest(testVnetHdr(1448), huge)
	got = readFrames(t, c, 65495)
	for _, b := range got {
		if len(b) > fabric.MaxFrame {
			t.Fatalf("a piece of %d bytes", len(b))
		}
	}
	if len(got) != 2 {
		t.Fatalf("a 64 KiB IP packet came as %d pieces, want 2", len(got))
	}

	// Toward the guest: what a guest with TSO takes (QEMU sets this).
	if err := unix.IoctlSetInt(int(tap.Fd()), unix.TUNSETOFFLOAD, hosttap.Offloads); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFrame(super); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 70000)
	n, err := tap.Read(buf)
	if err != nil || n != 10+len(super) || !bytes.Equal(buf[10:n], super) || buf[1] != hosttap.GSOTCPv4 {
		t.Fatalf("the guest read %d bytes (%v), header %x: want the super frame whole with a GSO header", n, err, buf[:10])
	}
	if err := c.WriteFrame(make([]byte, 3000)); err != nil { // too long, no GSO: dropped
		t.Fatalf("a frame the tap refuses: %v, want it dropped", err)
	}
}
