package tux

// The sending half of the vxlan helper: batches of frames from the
// switch become VXLAN datagrams (sendmmsg, UDP GSO where the kernel has
// it), super frames cut on the way.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// isSuperTCP tells a TCP super frame (partial checksum) from a frame.
func isSuperTCP(f []byte) bool {
	_, ok := parseTCP(f)
	return ok
}

const (
	vxMaxFrames  = 512   // frames per batch
	vxGSOMaxSegs = 64    // UDP_MAX_SEGMENTS of Linux 6.1
	vxGSOMaxLen  = 65000 // payload of one GSO send, under 64 KiB
)

// vxTx is the batch being built by fromSwitch.
type vxTx struct {
	h      *vxlanHelper
	hdr    []byte // the VXLAN header, shared by all datagrams
	frames []vxFrame
	segs   []byte // frames cut from super frames live here until flushed
	segOff int
	bytes  uint64

	ms   []ipv4.Message
	iov  [][]byte
	oob  []byte
	gsoN []int // frames per message (for counting a refused GSO send)
}

type vxFrame struct {
	b   []byte
	dst int // remote index, -1 for all
}

func (b *vxTx) add(f []byte) {
	b.frames = append(b.frames, vxFrame{f, b.h.destination(f)})
	b.bytes += uint64(len(f))
}

// segment cuts a super frame into b.segs (room checked by the caller),
// each frame built where it stays until the batch is sent.
func (b *vxTx) segment(f []byte) {
	mss := MSSFor(f, b.h.innerMTU)
	ok := segmentTCP(f, mss, false, func(n int) []byte {
		return b.segs[b.segOff : b.segOff+n]
	}, func(s []byte) {
		b.segOff += len(s)
		b.add(s)
	})
	if !ok {
		b.h.drop(vxDropOversize, nil)
	}
}

// flush sends the batch: floods as one datagram per remote, runs to one
// remote as GSO sends when possible.
func (b *vxTx) flush() {
	h := b.h
	b.ms, b.iov, b.oob, b.gsoN = b.ms[:0], b.iov[:0], b.oob[:0], b.gsoN[:0]
	if cap(b.iov) < 2*len(b.frames) {
		b.iov = make([][]byte, 0, 2*vxMaxFrames+2*len(b.frames))
	}
	if cap(b.oob) < 32*len(b.frames) {
		b.oob = make([]byte, 0, 32*(vxMaxFrames+len(b.frames)))
	}
	fr := b.frames
	for i := 0; i < len(fr); {
		f := fr[i]
		if f.dst < 0 {
			at := len(b.iov)
			b.iov = append(b.iov, b.hdr, f.b)
			for _, r := range h.remotes {
				b.ms = append(b.ms, ipv4.Message{Buffers: b.iov[at : at+2 : at+2], Addr: r})
				b.gsoN = append(b.gsoN, 1)
			}
			i++
			continue
		}
		seg := VXLANHdrLen + len(f.b)
		j, total := i+1, seg
		if h.gsoOK && seg <= h.gsoLimit {
			for j < len(fr) && j-i < vxGSOMaxSegs && fr[j].dst == f.dst {
				l := VXLANHdrLen + len(fr[j].b)
				if l > seg || total+l > vxGSOMaxLen {
					break
				}
				total += l
				j++
				if l < seg {
					break // a shorter one ends a run
				}
			}
		}
		at := len(b.iov)
		for _, x := range fr[i:j] {
			b.iov = append(b.iov, b.hdr, x.b)
		}
		m := ipv4.Message{Buffers: b.iov[at:len(b.iov):len(b.iov)], Addr: h.remotes[f.dst]}
		if j-i > 1 {
			h.gsoSends.Add(1)
			o := len(b.oob)
			b.oob = appendGSO(b.oob, uint16(seg))
			m.OOB = b.oob[o:len(b.oob):len(b.oob)]
		}
		b.ms = append(b.ms, m)
		b.gsoN = append(b.gsoN, j-i)
		i = j
	}
	h.send(b.ms, b.gsoN)
	h.txF.Add(uint64(len(fr)))
	h.txB.Add(b.bytes)
	clear(b.frames)
	b.frames, b.segOff, b.bytes = b.frames[:0], 0, 0
}

// appendGSO appends a UDP_SEGMENT control message for size.
func appendGSO(b []byte, size uint16) []byte {
	o := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(2))...)
	hd := (*unix.Cmsghdr)(unsafe.Pointer(&b[o]))
	hd.Level, hd.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	hd.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[o+unix.CmsgLen(0):], size)
	return b
}

// send writes ms (gsoN[i] frames in ms[i]). A GSO send the kernel
// refuses (path MTU below the datagram, no checksum offload) is sent
// again datagram by datagram, and such sizes go without GSO from then
// on; any other refusal drops the datagrams, counted.
func (h *vxlanHelper) send(ms []ipv4.Message, gsoN []int) {
	for len(ms) > 0 {
		n, err := h.bc.WriteBatch(ms, 0)
		if err == nil {
			ms, gsoN = ms[n:], gsoN[n:]
			continue
		}
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			continue
		}
		m := ms[0]
		if len(m.OOB) > 0 {
			seg := 0
			for _, x := range m.Buffers[:2] {
				seg += len(x)
			}
			if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOPROTOOPT) {
				h.gsoOK = false
			} else {
				h.gsoLimit = min(h.gsoLimit, seg-1)
			}
			log.Printf("vxlan: UDP GSO of %d-byte datagrams refused (%v); sending them one by one", seg, errors.Unwrap(err))
			one := make([]ipv4.Message, 0, len(m.Buffers)/2)
			ones := make([]int, 0, len(m.Buffers)/2)
			for k := 0; k+1 < len(m.Buffers); k += 2 {
				one = append(one, ipv4.Message{Buffers: m.Buffers[k : k+2 : k+2], Addr: m.Addr})
				ones = append(ones, 1)
			}
			h.send(one, ones)
			ms, gsoN = ms[1:], gsoN[1:]
			continue
		}
		h.drops[vxDropSend].Add(uint64(gsoN[0]))
		gsoN = gsoN[1:]
		e := &vxErr{at: time.Now(), msg: fmt.Sprintf("sending to %v: %v", m.Addr, errors.Unwrap(err))}
		if old := h.lastErr.Swap(e); old == nil || old.msg != e.msg {
			log.Print("vxlan: ", e.msg)
		}
		ms = ms[1:]
	}
}
