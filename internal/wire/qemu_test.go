package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"cloonix/internal/fabric"
)

// pipeConn is a net.Conn reading from a fixed input and recording writes.
type pipeConn struct {
	r io.Reader
	w bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error)         { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)        { return p.w.Write(b) }
func (p *pipeConn) Close() error                       { return nil }
func (p *pipeConn) LocalAddr() net.Addr                { return nil }
func (p *pipeConn) RemoteAddr() net.Addr               { return nil }
func (p *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

func framed(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func randFrame(r *rand.Rand, n int) []byte {
	f := make([]byte, n)
	r.Read(f)
	return f
}

// TestStreamRoundTrip: frames of every size class cross a real unix
// socket pair unchanged, through gathered and vectored writes.
func TestStreamRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l, err := ListenStream(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", l.Addr())
		if err != nil {
			return
		}
		// Echo back what arrives, as a switch port peer would.
		_, _ = io.Copy(c, c)
	}()
	fc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := fc.(*StreamConn)
	defer s.Close()
	r := rand.New(rand.NewSource(1))
	sizes := []int{14, 60, gatherMin - 1, gatherMin, 1500, 2048, 2049, 9000, 65535}
	var sent [][]byte
	for i := 0; i < 3000; i++ {
		n := sizes[i%len(sizes)]
		if i%7 == 0 {
			n = 14 + r.Intn(3000)
		}
		f := randFrame(r, n)
		sent = append(sent, f)
	}
	done := make(chan error, 1)
	go func() {
		for i, f := range sent {
			if err := s.WriteFrame(f); err != nil {
				done <- err
				return
			}
			if i%50 == 49 { // b must stay valid until Flush: it does here
				if err := s.Flush(); err != nil {
					done <- err
					return
				}
			}
		}
		done <- s.Flush()
	}()
	for i, want := range sent {
		f, err := s.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f.Bytes(), want) {
			t.Fatalf("frame %d (%d bytes) changed on the way", i, len(want))
		}
		f.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStreamBadSizes(t *testing.T) {
	good := bytes.Repeat([]byte{1}, 60)
	in := framed(make([]byte, 13), good, nil, good)
	s := NewStreamConn(&pipeConn{r: bytes.NewReader(in)})
	var got []error
	frames := 0
	for {
		f, err := s.ReadFrame()
		if err != nil {
			if err == io.EOF {
				break
			}
			got = append(got, err)
			if !errors.Is(err, fabric.ErrSkip) {
				t.Fatalf("short frame ended the stream: %v", err)
			}
			continue
		}
		if !bytes.Equal(f.Bytes(), good) {
			t.Fatal("frame after a skipped one is wrong: out of step")
		}
		frames++
	}
	if frames != 2 || len(got) != 2 {
		t.Errorf("%d frames and %v, want 2 frames and 2 skips", frames, got)
	}
	// Over 65535: the stream is out of step, the peer ends.
	s = NewStreamConn(&pipeConn{r: bytes.NewReader(append([]byte{0, 1, 0, 0}, make([]byte, 70000)...))})
	if _, err := s.ReadFrame(); !errors.Is(err, ErrFrameSize) || errors.Is(err, fabric.ErrSkip) {
		t.Errorf("65536-byte frame: %v", err)
	}
	// Cut inside a frame.
	s = NewStreamConn(&pipeConn{r: bytes.NewReader(framed(good)[:30])})
	if _, err := s.ReadFrame(); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: %v", err)
	}
}

func TestStreamWriteFormat(t *testing.T) {
	pc := &pipeConn{r: bytes.NewReader(nil)}
	s := NewStreamConn(pc)
	a, b, c := bytes.Repeat([]byte{1}, 20), bytes.Repeat([]byte{2}, 1500), bytes.Repeat([]byte{3}, 600)
	for _, f := range [][]byte{a, b, c, a} {
		if err := s.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if pc.w.Len() != 0 {
		t.Error("written before Flush")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pc.w.Bytes(), framed(a, b, c, a)) {
		t.Error("stream bytes differ from length-prefixed frames")
	}
	// Many pieces: more than one writev's worth.
	pc.w.Reset()
	var all [][]byte
	for i := 0; i < 3*maxPieces; i++ {
		all = append(all, b)
		if err := s.WriteFrame(b); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Flush()
	if !bytes.Equal(pc.w.Bytes(), framed(all...)) {
		t.Error("long batch garbled")
	}
}

// FuzzStreamRead: any input yields frames of 14..65535 bytes that match
// a plain reading of the length prefixes, skips for short ones, and an
// error (never a panic or a hang) for the rest.
func FuzzStreamRead(f *testing.F) {
	f.Add(framed(bytes.Repeat([]byte{1}, 60), make([]byte, 3), bytes.Repeat([]byte{2}, 14)))
	f.Add([]byte{0, 1, 0, 0, 1})
	f.Add([]byte{0, 0, 0})
	f.Add(framed(make([]byte, 13)))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := NewStreamConn(&pipeConn{r: bytes.NewReader(in)})
		rest := in
		for i := 0; ; i++ {
			fr, err := s.ReadFrame()
			if len(rest) < 4 {
				if err == nil {
					t.Fatalf("frame %d read from %d bytes", i, len(rest))
				}
				return
			}
			n := int(binary.BigEndian.Uint32(rest))
			switch {
			case n > fabric.MaxFrame:
				if err == nil || errors.Is(err, fabric.ErrSkip) {
					t.Fatalf("length %d accepted: %v", n, err)
				}
				return
			case len(rest) < 4+n:
				if err == nil {
					t.Fatal("frame past the end of input")
				}
				return
			case n < fabric.MinFrame:
				if !errors.Is(err, fabric.ErrSkip) {
					t.Fatalf("length %d: %v, want a skip", n, err)
				}
			default:
				if err != nil {
					t.Fatalf("good frame of %d: %v", n, err)
				}
				if !bytes.Equal(fr.Bytes(), rest[4:4+n]) {
					t.Fatal("frame content differs")
				}
				fr.Release()
			}
			rest = rest[4+n:]
		}
	})
}

func dgramPair(t testing.TB) (*DgramListener, *net.UnixConn) {
	dir := t.TempDir()
	l, err := ListenDgram(filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "peer.sock"), Net: "unixgram"}, &net.UnixAddr{Name: l.Addr(), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteBuffer(1 << 20)
	t.Cleanup(func() { c.Close() })
	return l, c
}

func TestDgram(t *testing.T) {
	l, c := dgramPair(t)
	accepted := make(chan fabric.Conn, 1)
	go func() {
		fc, err := l.Accept()
		if err == nil {
			accepted <- fc
		}
	}()
	select {
	case <-accepted:
		t.Fatal("accepted before the peer spoke")
	case <-time.After(50 * time.Millisecond):
	}
	good := bytes.Repeat([]byte{7}, 60)
	for _, d := range [][]byte{make([]byte, 5), make([]byte, 65536), good, make([]byte, 65535)} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	var fc fabric.Conn
	select {
	case fc = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no peer after a good datagram")
	}
	skips := 0
	var frames [][]byte
	for len(frames) < 2 {
		f, err := fc.ReadFrame()
		if errors.Is(err, fabric.ErrSkip) {
			skips++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, append([]byte(nil), f.Bytes()...))
		f.Release()
	}
	if skips != 2 || !bytes.Equal(frames[0], good) || len(frames[1]) != 65535 {
		t.Errorf("skips %d, frames %d/%d bytes", skips, len(frames[0]), len(frames[1]))
	}
	// Replies go to the address the peer sent from.
	if err := fc.WriteFrame(good); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err != nil || !bytes.Equal(buf[:n], good) {
		t.Errorf("reply %d %v", n, err)
	}
	// A restarted peer sends from a new address: replies follow it.
	c2, err := net.DialUnix("unixgram", &net.UnixAddr{Name: filepath.Join(filepath.Dir(l.Addr()), "peer2.sock"), Net: "unixgram"}, &net.UnixAddr{Name: l.Addr(), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Write(good); err != nil {
		t.Fatal(err)
	}
	if f, err := fc.ReadFrame(); err != nil {
		t.Fatal(err)
	} else {
		f.Release()
	}
	if err := fc.WriteFrame(good); err != nil {
		t.Fatal(err)
	}
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c2.Read(buf); err != nil || n != len(good) {
		t.Errorf("reply to the new peer: %d %v", n, err)
	}
	// Close unblocks a second Accept and removes the socket.
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	l.Close()
	if err := <-errc; err == nil {
		t.Error("Accept after Close succeeded")
	}
	if _, err := net.Dial("unixgram", l.Addr()); err == nil {
		t.Error("socket still there after Close")
	}
}

// FuzzDgramRead: a datagram is one frame if 14..65535 bytes, else a skip.
func FuzzDgramRead(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, 60))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{})
	l, c := dgramPair(f)
	first := bytes.Repeat([]byte{9}, 14)
	_, _ = c.Write(first)
	fc, err := l.Accept()
	if err != nil {
		f.Fatal(err)
	}
	if fr, err := fc.ReadFrame(); err != nil || !bytes.Equal(fr.Bytes(), first) {
		f.Fatalf("first datagram: %v", err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := c.Write(in); err != nil {
			t.Skip("datagram refused by the kernel")
		}
		fr, err := fc.ReadFrame()
		if len(in) < fabric.MinFrame || len(in) > fabric.MaxFrame {
			if !errors.Is(err, fabric.ErrSkip) {
				t.Fatalf("%d bytes: %v, want a skip", len(in), err)
			}
			return
		}
		if err != nil || !bytes.Equal(fr.Bytes(), in) {
			t.Fatalf("%d bytes: %v", len(in), err)
		}
		fr.Release()
	})
}

// TestStreamWriteNow: non-blocking writes fill the socket, keep the rest
// in order, and Flush sends what was kept; the byte stream is exactly
// the frames, length-prefixed, in order.
func TestStreamWriteNow(t *testing.T) {
	dir := t.TempDir()
	l, err := ListenStream(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("unix", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	fc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := fc.(*StreamConn)
	defer s.Close()
	r := rand.New(rand.NewSource(2))
	var want []byte
	kept := false
	batches := 0
	for !kept || batches < 5 {
		var fs []*fabric.Frame
		for i := 0; i < 1+r.Intn(200); i++ {
			n := []int{14, 64, gatherMin - 1, gatherMin, 1500, 9000}[r.Intn(6)]
			f := fabric.NewFrame(n)
			r.Read(f.Bytes())
			want = append(want, framed(f.Bytes())...)
			fs = append(fs, f)
		}
		k, err := s.WriteNow(fs)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			f.Release() // WriteNow copied what it kept
		}
		if k {
			kept = true
			batches++
		}
		if len(want) > 64<<20 {
			t.Fatal("the socket never filled up")
		}
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("stream of %d bytes differs from the %d written", len(b), len(want))
	}
	// Idle again: the next WriteNow goes straight out.
	f := fabric.NewFrame(60)
	if k, err := s.WriteNow([]*fabric.Frame{f}); k || err != nil {
		t.Errorf("WriteNow on an empty socket: kept %v, %v", k, err)
	}
}

// chunkReader returns its input in pieces of random length, as a socket
// does under load.
type chunkReader struct {
	b []byte
	r *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.b), 1+c.r.Intn(70000))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// TestStreamSlabViews: frames are views on the slabs the socket is read
// into. Frames held while many slabs are read, retired and reused stay
// intact, whatever the read boundaries.
func TestStreamSlabViews(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	sizes := []int{14, 60, copyMax, copyMax + 1, 1500, 9000, 65535}
	var sent [][]byte
	for i := 0; i < 4000; i++ {
		n := sizes[r.Intn(len(sizes))]
		if i%3 == 0 {
			n = 14 + r.Intn(4000)
		}
		sent = append(sent, randFrame(r, n))
	}
	s := NewStreamConn(&pipeConn{r: &chunkReader{b: framed(sent...), r: r}})
	type held struct {
		f *fabric.Frame
		i int
	}
	var hold []held
	check := func(h held) {
		if !bytes.Equal(h.f.Bytes(), sent[h.i]) {
			t.Fatalf("frame %d (%d bytes) changed while held", h.i, len(sent[h.i]))
		}
		h.f.Release()
	}
	for i := range sent {
		f, err := s.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(f.Bytes(), sent[i]) {
			t.Fatalf("frame %d (%d bytes) wrong", i, len(sent[i]))
		}
		switch {
		case i%5 == 0: // held across many later reads
			hold = append(hold, held{f, i})
		case i%5 == 1 && len(hold) > 0: // released out of order
			k := r.Intn(len(hold))
			check(hold[k])
			hold = append(hold[:k], hold[k+1:]...)
			f.Release()
		default:
			f.Release()
		}
	}
	for _, h := range hold {
		check(h)
	}
	if _, err := s.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}
