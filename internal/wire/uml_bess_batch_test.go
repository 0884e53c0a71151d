package wire

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"cloonix/internal/fabric"
)

// bessPair is a connected bess conn and the guest's end of it.
func bessPair(t *testing.T) (*BessConn, net.Conn) {
	t.Helper()
	l, err := ListenBess(filepath.Join(t.TempDir(), "b.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan fabric.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			got <- c
		}
	}()
	c, err := net.Dial("unixpacket", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn := (<-got).(*BessConn)
	t.Cleanup(func() { c.Close(); conn.Close() })
	return conn, c
}

// TestBessBatchRead: packets a guest queued come out of one receive in
// order, counted by Buffered; bad packets are skipped; a large packet
// in the first slot is kept whole and makes every later slot large; the
// peer's close comes after the frames before it.
func TestBessBatchRead(t *testing.T) {
	conn, c := bessPair(t)
	pkt := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	want := [][]byte{}
	send := func(p []byte, keep bool) {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		if keep {
			want = append(want, p)
		}
	}
	// First batch: 40 standard frames (more than one receive takes) and
	// a runt in the middle.
	for i := 0; i < 40; i++ {
		send(pkt(i, 60+i*36), true)
		if i == 5 {
			send(pkt(99, 10), false)
		}
	}
	read := func() {
		t.Helper()
		for i, w := range want {
			f, err := conn.ReadFrame()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(f.Bytes(), w) {
				t.Fatalf("frame %d: %d bytes of %d, want %d of %d", i, f.N, f.Bytes()[0], len(w), w[0])
			}
			f.Release()
		}
		want = want[:0]
	}
	f, err := conn.ReadFrame()
	if err != nil || !bytes.Equal(f.Bytes(), want[0]) {
		t.Fatalf("first frame: %v %v", f, err)
	}
	if b := conn.Buffered(); b != bessBatch-2 {
		t.Fatalf("Buffered after the first of a full batch: %d, want %d", b, bessBatch-2)
	}
	f.Release()
	want = want[1:]
	read()
	// A jumbo packet alone lands in slot 0 and is kept whole.
	send(pkt(1, 9000), true)
	read()
	if !conn.rx.big {
		t.Fatal("a 9000-byte packet did not make the slots large")
	}
	// Now large packets anywhere in a batch are kept.
	send(pkt(2, 100), true)
	send(pkt(3, 65535), true)
	send(pkt(4, 3000), true)
	read()
	// Close after two frames: both, then the close.
	send(pkt(5, 64), true)
	send(pkt(6, 64), true)
	c.Close()
	read()
	if _, err := conn.ReadFrame(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after the peer's close: %v, want net.ErrClosed", err)
	}
}

// TestBessTruncatedSmallSlot: before the peer has sent a large packet, a
// large packet behind a standard one is truncated by a small slot and
// dropped, and the frames after it still come in order.
func TestBessTruncatedSmallSlot(t *testing.T) {
	conn, c := bessPair(t)
	for _, n := range []int{64, 3000, 65} {
		if _, err := c.Write(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{64, 65} {
		f, err := conn.ReadFrame()
		if err != nil || f.N != n {
			t.Fatalf("got %v %v, want a frame of %d", f, err, n)
		}
		f.Release()
	}
	if !conn.rx.big {
		t.Fatal("a truncated packet did not make the slots large")
	}
}
