package tux

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

// TestTapConn moves frames through a real tap (it needs CAP_NET_ADMIN,
// as the tap tux does): what the port writes leaves the interface, what
// the interface sends the port reads; a TCP super frame the port writes
// goes to the kernel whole with a GSO header and is counted once.
func TestTapConn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a tap interface: run it as root (make test does)")
	}
	name := fmt.Sprintf("tct%d", os.Getpid()%100000)
	th := &tapHelper{ifname: name, mtu: 1500, fd: -1}
	if err := th.create(); err != nil {
		t.Fatal(err)
	}
	held := os.NewFile(uintptr(th.fd), "tap")
	defer held.Close()
	a, b := net.Pipe()
	defer b.Close()
	fd, err := unix.Dup(th.fd)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.SetNonblock(fd, true)
	c, err := NewTapConn(os.NewFile(uintptr(fd), "tap"), TapOptions{Name: name, MACs: &wire.MACSet{}, OnClose: func() { a.Close() }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	// A packet socket on the interface: the host's side of the tap.
	ps, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ps)
	if err := unix.Bind(ps, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(ps, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})

	for _, n := range []int{60, 1514} {
		// Port to host.
		f := vxTestFrame(0x22, 0x11, n)
		if err := c.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
		if got := recvNot(t, ps, ifi.HardwareAddr); !bytes.Equal(got, f) {
			t.Fatalf("%d bytes written by the port: the host saw %d bytes", n, len(got))
		}
		// Host to port.
		g := vxTestFrame(0x33, 0x44, n)
		if err := unix.Sendto(ps, g, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
			t.Fatal(err)
		}
		rf := readNot(t, c, ifi.HardwareAddr)
		if !bytes.Equal(rf.Bytes(), g) {
			t.Fatalf("%d bytes sent by the host: the port read %d bytes", n, rf.N)
		}
		rf.Release()
	}
	// Host to port with the port already waiting (its read found the
	// tap empty first; the sleep only makes that likely).
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		done := time.AfterFunc(5*time.Second, func() { c.Close() })
		defer done.Stop()
		for {
			rf, err := c.ReadFrame()
			if err != nil {
				return
			}
			if b := rf.Bytes(); !bytes.Equal(b[6:12], ifi.HardwareAddr) {
				got <- append([]byte(nil), b...)
				rf.Release()
				return
			}
			rf.Release()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	g := vxTestFrame(0x33, 0x44, 200)
	if err := unix.Sendto(ps, g, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
		t.Fatal(err)
	}
	if r, ok := <-got; !ok || !bytes.Equal(r, g) {
		t.Fatalf("sent while the port waited: the port read %d bytes (ok %v)", len(r), ok)
	}
	// A super frame (the host's TCP segment as another tap hands it
	// over) leaves whole: the kernel takes it with its GSO header.
	super := superFrame(false, 20000, 0x18)
	if err := c.WriteFrame(super); err != nil {
		t.Fatal(err)
	}
	if got := recvNot(t, ps, ifi.HardwareAddr); len(got) != len(super) {
		t.Fatalf("a %d-byte super frame reached the host as %d bytes", len(super), len(got))
	}
	st := c.stats()
	if st.TxFrames != 3 || st.RxFrames < 3 || st.Drops != 0 {
		t.Fatalf("counters %+v, want 3 frames out, 3 or more in (the kernel talks too), no drop", st)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvNot returns the next frame on the packet socket not sent by the
// interface's own MAC (the kernel's IPv6 chatter).
func recvNot(t *testing.T, ps int, own net.HardwareAddr) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	for i := 0; i < 50; i++ {
		n, _, err := unix.Recvfrom(ps, buf, 0)
		if err != nil {
			t.Fatalf("packet socket: %v", err)
		}
		if !bytes.Equal(buf[6:12], own) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	t.Fatal("only the interface's own frames")
	return nil
}

// readNot reads frames from the conn until one not sent by own.
func readNot(t *testing.T, c *TapConn, own net.HardwareAddr) *fabric.Frame {
	t.Helper()
	done := time.AfterFunc(5*time.Second, func() { c.Close() })
	defer done.Stop()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("reading the tap: %v", err)
		}
		if !bytes.Equal(f.Bytes()[6:12], own) {
			return f
		}
		f.Release()
	}
}
