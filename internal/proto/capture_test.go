package proto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

func chunks(parts ...[]byte) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], uint32(len(p)))
		b.Write(h[:])
		b.Write(p)
	}
	b.Write([]byte{0, 0, 0, 0})
	return b.Bytes()
}

func stream(b []byte) *CaptureStream {
	return &CaptureStream{r: bufio.NewReader(bytes.NewReader(b))}
}

func TestCaptureStreamRead(t *testing.T) {
	in := append(chunks([]byte("pcapng-"), []byte("header"), []byte("+frames")),
		`<capture_end name="l" frames="3" dropped="2" reason="count reached"/>`+"\n"...)
	s := stream(in)
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "pcapng-header+frames" {
		t.Errorf("data %q", got)
	}
	if e := s.End(); e == nil || e.Frames != 3 || e.Dropped != 2 || e.Reason != "count reached" {
		t.Errorf("end %+v", e)
	}
	// Cut streams are errors, not a clean end.
	for _, b := range [][]byte{
		in[:5],
		in[:len(in)-10],
		chunks([]byte("x"))[:6],
		append(chunks([]byte("x")), "<other/>\n"...),
	} {
		s := stream(b)
		if _, err := io.ReadAll(s); err == nil || s.End() != nil {
			t.Errorf("stream %q: err %v, end %+v; want an error", b, err, s.End())
		}
	}
}

// FuzzCaptureStream: whatever the switch sends, reading ends (data, an
// error or the end) without a panic.
func FuzzCaptureStream(f *testing.F) {
	f.Add(chunks([]byte("abc")))
	f.Add(append(chunks([]byte("abc")), `<capture_end frames="1" dropped="0" reason="x"/>`+"\n"...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := stream(b)
		n, err := io.Copy(io.Discard, s)
		if n > int64(len(b)) {
			t.Fatalf("read %d bytes out of %d", n, len(b))
		}
		if err == nil && s.End() == nil {
			t.Fatal("clean end without a summary")
		}
	})
}
