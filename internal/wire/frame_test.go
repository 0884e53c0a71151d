package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func frames(sizes ...int) ([]byte, [][]byte) {
	var out bytes.Buffer
	var all [][]byte
	for i, n := range sizes {
		b := bytes.Repeat([]byte{byte(i + 1)}, n)
		if err := WriteFrame(&out, b); err != nil {
			panic(err)
		}
		all = append(all, b)
	}
	return out.Bytes(), all
}

func TestFrameReader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		want  int   // frames read before the error
		err   error // the error that ends the stream
		chunk int   // bytes per Read (0: all at once)
	}{
		{"three", mustFrames(14, 1500, 65535), 3, io.EOF, 0},
		{"one byte at a time", mustFrames(14, 60), 2, io.EOF, 1},
		{"too short", mustFrames(13), 0, ErrFrameSize, 0},
		{"too long", []byte{0, 1, 0, 0}, 0, ErrFrameSize, 0},
		{"cut in the header", []byte{0, 0}, 0, io.EOF, 0},
		{"cut in the frame", append([]byte{0, 0, 0, 20}, make([]byte, 10)...), 0, io.EOF, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tc.in)
			if tc.chunk > 0 {
				r = &chunked{b: tc.in, n: tc.chunk}
			}
			fr := NewFrameReader(r, 0, 14, MaxStreamFrame)
			_, want := framesOf(tc.in)
			got := 0
			var err error
			for {
				var b []byte
				if b, err = fr.Next(); err != nil {
					break
				}
				if !bytes.Equal(b, want[got]) {
					t.Fatalf("frame %d: %d bytes, want %d", got, len(b), len(want[got]))
				}
				got++
			}
			if got != tc.want {
				t.Fatalf("read %d frames, want %d", got, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
}

// TestTryNext checks the non-blocking reader a batching sender uses.
func TestTryNext(t *testing.T) {
	in, want := frames(100, 200)
	fr := NewFrameReader(&chunked{b: in, n: 150}, 0, 14, MaxStreamFrame)
	var got [][]byte
	for len(got) < 2 {
		b, ok, err := fr.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if err := fr.Refill(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got = append(got, append([]byte(nil), b...))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	bad := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 3}), 0, 14, MaxStreamFrame)
	if err := bad.Refill(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bad.TryNext(); !errors.Is(err, ErrFrameSize) {
		t.Fatal("TryNext took a 3-byte frame")
	}
}

func TestBufferFrame(t *testing.T) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := BufferFrame(w, []byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	_ = w.Flush()
	if got := out.Bytes(); FrameLen(got) != 16 || string(got[HeaderLen:]) != "0123456789abcdef" {
		t.Fatalf("got %q", got)
	}
	if got := AppendHeader(nil, 0x010203); !bytes.Equal(got, []byte{0, 1, 2, 3}) {
		t.Fatalf("AppendHeader: %v", got)
	}
}

func mustFrames(sizes ...int) []byte { b, _ := frames(sizes...); return b }

// framesOf splits well-formed input back into its frames.
func framesOf(in []byte) ([]byte, [][]byte) {
	var all [][]byte
	for len(in) >= HeaderLen {
		n := FrameLen(in)
		if len(in) < HeaderLen+n {
			break
		}
		all = append(all, in[HeaderLen:HeaderLen+n])
		in = in[HeaderLen+n:]
	}
	return nil, all
}

// chunked returns at most n bytes per Read.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
	f.Add(mustFrames(14, 100))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), 0, 14, MaxStreamFrame)
		_, want := framesOf(in)
		total := 0
		for i := 0; ; i++ {
			b, err := fr.Next()
			if err != nil {
				break
			}
			if len(b) < 14 || len(b) > MaxStreamFrame {
				t.Fatalf("frame of %d bytes", len(b))
			}
			if i >= len(want) || !bytes.Equal(b, want[i]) {
				t.Fatalf("frame %d is not the input's", i)
			}
			total += HeaderLen + len(b)
		}
		if total > len(in) {
			t.Fatalf("read %d of %d bytes", total, len(in))
		}
	})
}
