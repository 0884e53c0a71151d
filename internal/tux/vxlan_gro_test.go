package tux

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// vxSeg is a TCP segment of flow (port) at seq with a full checksum.
func vxSeg(port uint16, seq uint32, flags byte, payload []byte) []byte {
	f := vxTCPFrame(payload)
	ti, _ := parseTCP(f)
	binary.BigEndian.PutUint16(f[ti.l4:], port)
	binary.BigEndian.PutUint32(f[ti.l4+4:], seq)
	f[ti.l4+13] = flags
	setIPv4Checksum(f, ti)
	setTCPChecksum(f, ti, false)
	return f
}

func TestTCPMerger(t *testing.T) {
	p := bytes.Repeat([]byte("0123456789"), 146) // 1460 bytes: a full segment at MTU 1500
	q := p[:1410]                                // one at MTU 1450
	bad := vxSeg(1, 1000+2*1460, 0x10, p)
	bad[len(bad)-1] ^= 1
	// 44 full segments and one more: 64294 bytes and then some.
	long := func(last []byte) [][]byte {
		var in [][]byte
		for i := range 44 {
			in = append(in, vxSeg(1, 1000+uint32(i)*1460, 0x10, p))
		}
		return append(in, vxSeg(1, 1000+44*1460, 0x10, last))
	}
	for _, c := range []struct {
		name string
		in   [][]byte
		want []int // payload bytes per frame out (-1: not TCP)
	}{
		{"a run", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x10, p), vxSeg(1, 3920, 0x10, p)}, []int{4380}},
		{"PSH ends a run", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x18, p), vxSeg(1, 3920, 0x10, p)}, []int{2920, 1460}},
		{"a short one ends a run", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x10, p), vxSeg(1, 3920, 0x10, p[:500]), vxSeg(1, 4420, 0x10, p)}, []int{3420, 1460}},
		{"a gap in seq", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2461, 0x10, p)}, []int{1460, 1460}},
		{"another flow", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(2, 2460, 0x10, p)}, []int{1460, 1460}},
		{"FIN not merged", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x11, p)}, []int{1460, 1460}},
		{"a bad checksum stays out", [][]byte{vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x10, p), bad}, []int{2920, 1460}},
		{"pure ACKs pass", [][]byte{vxSeg(1, 1000, 0x10, nil), vxSeg(1, 1000, 0x10, nil)}, []int{0, 0}},
		{"not TCP", [][]byte{vxTestFrame(1, 2, 100), vxSeg(1, 1000, 0x10, p)}, []int{-1, 1460}},
		{"as long as the switch takes", long(p[:1000]), []int{44*1460 + 1000}},
		{"no longer", long(p), []int{44 * 1460, 1460}},
		{"MTU 1450 segments pass as sent", [][]byte{vxSeg(1, 1000, 0x10, q), vxSeg(1, 2410, 0x10, q), vxSeg(1, 3820, 0x10, q)}, []int{1410, 1410, 1410}},
	} {
		var out [][]byte
		m := newTCPMerger(func(f []byte) error { out = append(out, append([]byte(nil), f...)); return nil })
		for _, f := range c.in {
			if err := m.add(f); err != nil {
				t.Fatal(err)
			}
		}
		m.flush()
		if len(out) != len(c.want) {
			t.Errorf("%s: %d frames out, want %d", c.name, len(out), len(c.want))
			continue
		}
		for i, f := range out {
			ti, ok := parseTCP(f)
			if c.want[i] < 0 {
				if ok {
					t.Errorf("%s: frame %d became TCP", c.name, i)
				}
				continue
			}
			if !ok {
				t.Errorf("%s: frame %d is not TCP", c.name, i)
				continue
			}
			if n := len(f) - ti.hdrEnd(); n != c.want[i] {
				t.Errorf("%s: frame %d carries %d bytes, want %d", c.name, i, n, c.want[i])
			}
			if len(f) > StdFrame {
				if binary.BigEndian.Uint16(f[ti.l4+16:]) != pseudoSum(f, ti, len(f)-ti.l4) {
					t.Errorf("%s: super frame %d without the partial checksum", c.name, i)
				}
				// Cut again, it gives the segments back with right checksums.
				SegmentTCP(f, 1460, false, make([]byte, 2000), func(s []byte) {
					st, _ := parseTCP(s)
					if !vxChecksumsOK(s, st) {
						t.Errorf("%s: a re-cut segment has bad checksums", c.name)
					}
				})
			} else if i < len(c.in) && !vxChecksumsOK(f, ti) && !bytes.Equal(f, bad) {
				t.Errorf("%s: frame %d has bad checksums", c.name, i)
			}
		}
	}
}

// Frames from the network reach the merger: whatever they hold, it must
// not panic, and what goes out carries every payload byte that came in.
func FuzzTCPMerger(f *testing.F) {
	p := bytes.Repeat([]byte{7}, 1460)
	f.Add(vxSeg(1, 1000, 0x10, p), vxSeg(1, 2460, 0x10, p))
	f.Add(vxSeg(1, 1000, 0x10, p), []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		in := 0
		var out int
		m := newTCPMerger(func(x []byte) error { out += len(x); return nil })
		for _, x := range [][]byte{a, b} {
			in += len(x)
			if err := m.add(x); err != nil {
				t.Fatal(err)
			}
		}
		m.flush()
		if out > in {
			t.Fatalf("%d bytes out of %d in", out, in)
		}
	})
}
