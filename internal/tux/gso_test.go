package tux

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// superFrame builds an Ethernet/IPv4-or-6/TCP frame with payload n bytes
// and a partial checksum, as a tap with TSO hands it over.
func superFrame(v6 bool, n int, flags byte) []byte {
	var b []byte
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0}
	tcp := make([]byte, 32) // 20 + 12 bytes of options
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // wraps during the test
	tcp[12] = 8 << 4
	tcp[13] = flags
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	if v6 {
		eth[12], eth[13] = 0x86, 0xdd
		ip := make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)+n))
		ip[6], ip[7] = 6, 64
		ip[23], ip[39] = 1, 2
		b = append(append(append(eth, ip...), tcp...), payload...)
	} else {
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)+n))
		binary.BigEndian.PutUint16(ip[4:], 100)
		ip[6] = 0x40 // DF
		ip[8], ip[9] = 64, 6
		copy(ip[12:], []byte{10, 0, 2, 15, 10, 0, 2, 16})
		b = append(append(append(eth, ip...), tcp...), payload...)
	}
	t, ok := parseTCP(b)
	if !ok {
		panic("bad test frame")
	}
	if !v6 {
		setIPv4Checksum(b, t)
	}
	setTCPChecksum(b, t, true)
	return b
}

// tcpChecksumOK verifies a frame's full TCP checksum.
func tcpChecksumOK(b []byte) bool {
	t, ok := parseTCP(b)
	if !ok {
		return false
	}
	return checksum.Checksum(b[t.l4:], pseudoSum(b, t, len(b)-t.l4)) == 0xffff
}

func TestSegmentTCP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v6    bool
		n     int
		mss   int
		flags byte
		want  int
	}{
		{"v4 64k", false, 65000, 1448, 0x18 | 0x01 | 0x80, 45},
		{"v6 30k", true, 30000, 1428, 0x18, 22},
		{"v4 exact", false, 2 * 1448, 1448, 0x10, 2},
		{"v4 no payload", false, 0, 1448, 0x10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := superFrame(tc.v6, tc.n, tc.flags)
			info, _ := parseTCP(b)
			var got [][]byte
			var payload []byte
			ok := SegmentTCP(b, tc.mss, false, nil, func(s []byte) {
				got = append(got, append([]byte(nil), s...))
			})
			if !ok || len(got) != tc.want {
				t.Fatalf("ok=%v segments=%d, want %d", ok, len(got), tc.want)
			}
			seq := binary.BigEndian.Uint32(b[info.l4+4:])
			for i, s := range got {
				si, ok := parseTCP(s)
				if !ok {
					t.Fatalf("segment %d does not parse", i)
				}
				if !tcpChecksumOK(s) {
					t.Errorf("segment %d: bad TCP checksum", i)
				}
				if !tc.v6 && checksum.Checksum(s[si.l3:si.l4], 0) != 0xffff {
					t.Errorf("segment %d: bad IPv4 checksum", i)
				}
				if got := binary.BigEndian.Uint32(s[si.l4+4:]); got != seq+uint32(len(payload)) {
					t.Errorf("segment %d: seq %x, want %x", i, got, seq+uint32(len(payload)))
				}
				f := s[si.l4+13]
				last := i == len(got)-1
				if (f&0x01 != 0) != (last && tc.flags&0x01 != 0) || (f&0x08 != 0) != (last && tc.flags&0x08 != 0) {
					t.Errorf("segment %d: flags %#x", i, f)
				}
				if f&0x80 != 0 && i > 0 {
					t.Errorf("segment %d: CWR after the first", i)
				}
				if len(s)-si.hdrEnd() > tc.mss {
					t.Errorf("segment %d: %d bytes of payload > mss %d", i, len(s)-si.hdrEnd(), tc.mss)
				}
				payload = append(payload, s[si.hdrEnd():]...)
			}
			if !bytes.Equal(payload, b[info.hdrEnd():]) {
				t.Error("payload differs after segmentation")
			}
		})
	}
}

func TestSegmentPartialChunks(t *testing.T) {
	b := superFrame(false, 65000, 0x10)
	n := 0
	SegmentTCP(b, 30000, true, nil, func(s []byte) {
		n++
		ti, _ := parseTCP(s)
		// A partial checksum is the pseudo-header sum of this piece.
		if got, want := binary.BigEndian.Uint16(s[ti.l4+16:]), pseudoSum(s, ti, len(s)-ti.l4); got != want {
			t.Errorf("piece %d: partial checksum %#x, want %#x", n, got, want)
		}
	})
	if n != 3 {
		t.Fatalf("%d pieces, want 3", n)
	}
}

func TestCompleteChecksum(t *testing.T) {
	b := superFrame(false, 500, 0x18)
	ti, _ := parseTCP(b)
	if tcpChecksumOK(b) {
		t.Fatal("a partial checksum should not verify")
	}
	if !CompleteChecksum(b, ti.l4, 16) || !tcpChecksumOK(b) {
		t.Fatal("completed checksum does not verify")
	}
	if CompleteChecksum(b, len(b), 16) || CompleteChecksum(b[:40], ti.l4, 16) {
		t.Fatal("out of range accepted")
	}
}

func TestParseTCPRefuses(t *testing.T) {
	good := superFrame(false, 100, 0x10)
	for name, mut := range map[string]func([]byte) []byte{
		"short":     func(b []byte) []byte { return b[:30] },
		"udp":       func(b []byte) []byte { b[14+9] = 17; return b },
		"fragment":  func(b []byte) []byte { b[14+6] = 0x20; return b },
		"bad len":   func(b []byte) []byte { return b[:len(b)-1] },
		"arp":       func(b []byte) []byte { b[12], b[13] = 8, 6; return b },
		"tcp hdr 4": func(b []byte) []byte { b[34+12] = 1 << 4; return b },
	} {
		b := mut(append([]byte(nil), good...))
		if _, ok := parseTCP(b); ok {
			t.Errorf("%s: parsed", name)
		}
		if SegmentTCP(b, 100, false, nil, func([]byte) { t.Errorf("%s: emitted", name) }) {
			t.Errorf("%s: segmented", name)
		}
	}
	if IsSuper(good) {
		t.Error("a 100-byte payload frame is not super")
	}
	if !IsSuper(superFrame(true, 5000, 0x10)) {
		t.Error("a 5000-byte v6 frame is super")
	}
}

func FuzzSegmentTCP(f *testing.F) {
	f.Add(superFrame(false, 3000, 0x18), 1448)
	f.Add(superFrame(true, 3000, 0x11), 100)
	f.Fuzz(func(t *testing.T, b []byte, mss int) {
		if mss < 1 || mss > 9000 || len(b) > 70000 {
			return
		}
		total := 0
		SegmentTCP(b, mss, false, nil, func(s []byte) {
			ti, ok := parseTCP(s)
			if !ok {
				t.Fatalf("emitted an unparsable segment")
			}
			total += len(s) - ti.hdrEnd()
		})
		if ti, ok := parseTCP(b); ok && total != len(b)-ti.hdrEnd() {
			t.Fatalf("payload %d in, %d out", len(b)-ti.hdrEnd(), total)
		}
	})
}

// segmentTCPSplit (headers built, payload left in the super frame) gives
// the same segments as SegmentTCP, odd sizes included (the payload's sum
// is joined to the header's at an even offset).
func TestSegmentTCPSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		v6   bool
		n    int
		mss  int
	}{
		{"v4 64k", false, 65000, 1448},
		{"v6 30k odd end", true, 30001, 1428},
		{"v4 odd mss", false, 10001, 1447},
		{"v4 no payload", false, 0, 1448},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := superFrame(tc.v6, tc.n, 0x18|0x01|0x80)
			var want, got [][]byte
			SegmentTCP(b, tc.mss, false, nil, func(s []byte) { want = append(want, append([]byte(nil), s...)) })
			ok := segmentTCPSplit(b, tc.mss, func(n int) []byte { return make([]byte, n) }, func(h, p []byte) {
				// The payload is b's own memory, not a copy.
				if len(p) > 0 && &p[:cap(p)][cap(p)-1] != &b[:cap(b)][cap(b)-1] {
					t.Fatal("the payload was copied out of the super frame")
				}
				got = append(got, append(append([]byte(nil), h...), p...))
			})
			if !ok || len(got) != len(want) {
				t.Fatalf("ok=%v: %d segments, want %d", ok, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("segment %d differs", i)
				}
			}
		})
	}
}
