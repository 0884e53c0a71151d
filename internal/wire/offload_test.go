package wire

import (
	"bytes"
	"net"
	"testing"
)

// halves cuts a frame in two "standard" frames of the same header.
type halves struct{}

func (halves) Segment(b, scratch []byte, emit func([]byte)) bool {
	n := len(b) / 2
	emit(b[:n])
	emit(append(append(scratch[:0], b[:14]...), b[n:]...))
	return true
}

func frameFrom(dst, src byte, n int) []byte {
	b := make([]byte, n)
	b[5], b[11] = dst, src
	return b
}

// TestOffloadConn: super frames pass whole only toward MACs learnt on an
// offload conn of the same set; toward others they are cut. Written
// frames keep the stream framing.
func TestOffloadConn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		learnt bool // the destination sent on a conn of the set first
		frame  []byte
		want   []int // sizes read
	}{
		{"standard", false, frameFrom(2, 1, 100), []int{100}},
		{"super to an unknown MAC", false, frameFrom(2, 1, 4000), []int{2000, 2014}},
		{"super to a tap's MAC", true, frameFrom(2, 1, 4000), []int{4000}},
		{"super broadcast", true, append([]byte{0xff}, frameFrom(2, 1, 4000)[1:]...), []int{2000, 2014}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var macs MACSet
			if tc.learnt {
				macs.Learn(frameFrom(0, 2, 60))
			}
			a, b := net.Pipe()
			defer a.Close()
			c := NewOffloadConn(b, &macs, halves{})
			defer c.Close()
			go WriteFrame(a, tc.frame)
			for i, n := range tc.want {
				f, err := c.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if len(f.Bytes()) != n {
					t.Fatalf("frame %d: %d bytes, want %d", i, len(f.Bytes()), n)
				}
				f.Release()
			}
			if !macs.TakesSuper(frameFrom(1, 9, 60)) {
				t.Fatal("the sender's MAC was not learnt")
			}
		})
	}
	a, b := net.Pipe()
	defer a.Close()
	c := NewOffloadConn(b, &MACSet{}, halves{})
	x, y := bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 3000)
	go func() {
		_ = c.WriteFrame(x)
		_ = c.WriteFrame(y)
		_ = c.Flush()
	}()
	fr := NewFrameReader(a, 0, 14, MaxStreamFrame)
	for _, want := range [][]byte{x, y} {
		got, err := fr.Next()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(want))
		}
	}
}
