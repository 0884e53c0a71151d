package machine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"cloonix/internal/hosttap"
)

// tcpFrame is an Ethernet/IPv4/TCP frame with n bytes of payload.
func tcpFrame(n int) []byte {
	b := make([]byte, 14+20+20+n)
	copy(b, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0})
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(min(len(b)-14, 0xffff)))
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	tcp[12], tcp[13] = 5<<4, 0x18
	for i := range n {
		b[54+i] = byte(i * 7)
	}
	return b
}

// gsoHdr is a virtio_net_hdr for TCPv4 frame b cut at mss (0: none).
func gsoHdr(mss int) []byte {
	h := make([]byte, hosttap.VnetHdrLen)
	if mss > 0 {
		h[0], h[1] = 1, 1 // NEEDS_CSUM, GSO_TCPV4
		binary.LittleEndian.PutUint16(h[2:], 54)
		binary.LittleEndian.PutUint16(h[4:], uint16(mss))
		binary.LittleEndian.PutUint16(h[6:], 34)
		binary.LittleEndian.PutUint16(h[8:], 16)
	}
	return h
}

// readWithin reads one message from the non-blocking fd, waiting up to d.
func readWithin(t *testing.T, fd int, d time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			continue
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return buf[:n]
	}
	return nil
}

// TestVTap: the switch's side of a QEMU tap (a packet socket) and QEMU's
// (the tap descriptor) exchange plain frames and TCP super frames whole,
// with their GSO headers; the tap is in the switch's namespace, not the
// host's, and has no address of its own; release removes it.
func TestVTap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("makes taps and a network namespace: run it as root (make test does)")
	}
	if !vtapUsable() {
		t.Fatal("root cannot make QEMU's taps here (the switch's log says why)")
	}
	name := vtapName(fmt.Sprintf("/test/%d/eth0", os.Getpid()))
	sock, release, err := OpenVTap(name)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	defer release()
	if _, _, err := OpenVTap(name); err == nil {
		t.Fatal("a second tap of the same name was made")
	}
	tap, err := VTapFile(name)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	// What QEMU does for a guest with checksum and TSO offloads.
	tfd, sfd := int(tap.Fd()), int(sock.Fd())
	if err := unix.IoctlSetInt(tfd, unix.TUNSETOFFLOAD, hosttap.Offloads); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(tfd, true); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("tap %s is in the host's namespace", name)
	}
	checkVTapLink(t, name)
	// The namespace sends the guest nothing of its own (no IPv6 router
	// solicitation, no ARP).
	if got := readWithin(t, tfd, 1500*time.Millisecond); got != nil {
		t.Fatalf("the guest got %d bytes from the taps' namespace: %x", len(got), got)
	}
	vtapExchange(t, tfd, sfd)
	// The socket hears nothing but the guest: its own sends did not come back.
	if got := readWithin(t, sfd, 200*time.Millisecond); got != nil {
		t.Fatalf("the switch's socket read %d unexpected bytes", len(got))
	}
	// A guest started again (a new VTapFile) does not get what the tap
	// queued toward the guest while nobody read it; the tap still works.
	for i := range 3 {
		if _, err := unix.Writev(sfd, [][]byte{gsoHdr(0), tcpFrame(200 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	again, err := VTapFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := readWithin(t, int(again.Fd()), 300*time.Millisecond); got != nil {
		t.Fatalf("a guest started again got %d bytes queued before it started", len(got))
	}
	f := tcpFrame(300)
	if _, err := unix.Writev(sfd, [][]byte{gsoHdr(0), f}); err != nil {
		t.Fatal(err)
	}
	if got := readWithin(t, int(again.Fd()), 2*time.Second); len(got) < hosttap.VnetHdrLen || !bytes.Equal(got[hosttap.VnetHdrLen:], f) {
		t.Fatalf("after the drain: got %d bytes, want a header and the %d-byte frame", len(got), len(f))
	}
	again.Close()
	release()
	tap.Close()
	if err := inVTapNS(func() error {
		if _, err := netlink.LinkByName(name); err == nil {
			return fmt.Errorf("tap %s still there after release", name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := VTapFile(name); err == nil {
		t.Fatal("VTapFile gave a released tap")
	}
}

// checkVTapLink: tap name, in the taps' namespace, is up, without ARP
// and without any address.
func checkVTapLink(t *testing.T, name string) {
	if err := inVTapNS(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if l.Attrs().Flags&unix.IFF_UP == 0 || l.Attrs().RawFlags&unix.IFF_NOARP == 0 {
			return fmt.Errorf("flags %v: want up, no ARP", l.Attrs().Flags)
		}
		if a, _ := netlink.AddrList(l, netlink.FAMILY_ALL); len(a) != 0 {
			return fmt.Errorf("addresses %v: want none (no IPv6 link-local either)", a)
		}
		return nil
	}); err != nil {
		t.Fatalf("in the taps' namespace: %v", err)
	}
}

// vtapExchange writes plain frames and super frames each way between
// QEMU's side (tfd) and the switch's (sfd): each arrives whole, with its
// GSO header.
func vtapExchange(t *testing.T, tfd, sfd int) {
	for _, c := range []struct {
		what string
		from int
		to   int
		mss  int
		size int
	}{
		{"guest to switch, plain", tfd, sfd, 0, 100},
		{"guest to switch, super frame", tfd, sfd, 1448, 30000},
		{"switch to guest, plain", sfd, tfd, 0, 1000},
		{"switch to guest, super frame", sfd, tfd, 1448, 60000},
	} {
		f := tcpFrame(c.size)
		if _, err := unix.Writev(c.from, [][]byte{gsoHdr(c.mss), f}); err != nil {
			t.Fatalf("%s: write: %v", c.what, err)
		}
		got := readWithin(t, c.to, 2*time.Second)
		if len(got) < hosttap.VnetHdrLen || !bytes.Equal(got[hosttap.VnetHdrLen:], f) {
			t.Fatalf("%s: got %d bytes, want a header and the %d-byte frame", c.what, len(got), len(f))
		}
		h := got[:hosttap.VnetHdrLen]
		if gsoType, mss := h[1], binary.LittleEndian.Uint16(h[4:]); c.mss > 0 && (gsoType != 1 || int(mss) != c.mss) {
			t.Fatalf("%s: header %x: want GSO TCPv4 of %d", c.what, h, c.mss)
		}
	}
}
