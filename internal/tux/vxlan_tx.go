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
	pay []byte // a segment's payload, left in its super frame; or nil
	dst int    // remote index, -1 for all
}

func (f vxFrame) len() int { return len(f.b) + len(f.pay) }

func (b *vxTx) add(f, pay []byte) {
	b.frames = append(b.frames, vxFrame{f, pay, b.h.destination(f)})
	b.bytes += uint64(len(f) + len(pay))
}

// segment cuts a super frame: each segment's headers are built in
// b.segs, its payload is sent from the super frame (which the caller
// keeps until the batch is flushed, as it does any frame it passes).
func (b *vxTx) segment(f []byte) {
	mss := MSSFor(f, b.h.innerMTU)
	if mss <= 0 {
		b.h.drop(vxDropOversize, nil)
		return
	}
	t, _ := parseTCP(f)
	segs := (len(f)-t.hdrEnd())/mss + 1
	if len(b.segs)-b.segOff < segs*t.hdrEnd() {
		b.flush()
	}
	ok := segmentTCPSplit(f, mss, func(n int) []byte {
		s := b.segs[b.segOff : b.segOff+n : b.segOff+n]
		b.segOff += n
		return s
	}, b.add)
	if !ok {
		b.h.drop(vxDropOversize, nil)
	}
}

// flush sends the batch: floods as one datagram per remote, runs to one
// remote as GSO sends when possible.
func (b *vxTx) flush() {
	h := b.h
	b.ms, b.iov, b.oob, b.gsoN = b.ms[:0], b.iov[:0], b.oob[:0], b.gsoN[:0]
	if cap(b.iov) < 3*len(b.frames) {
		b.iov = make([][]byte, 0, 3*vxMaxFrames+3*len(b.frames))
	}
	if cap(b.oob) < 32*len(b.frames) {
		b.oob = make([]byte, 0, 32*(vxMaxFrames+len(b.frames)))
	}
	fr := b.frames
	for i := 0; i < len(fr); {
		f := fr[i]
		if f.dst < 0 {
			at := len(b.iov)
			b.iov = f.appendIOV(b.iov, b.hdr)
			for _, r := range h.remotes {
				b.ms = append(b.ms, ipv4.Message{Buffers: b.iov[at:len(b.iov):len(b.iov)], Addr: r})
				b.gsoN = append(b.gsoN, 1)
			}
			i++
			continue
		}
		seg := VXLANHdrLen + f.len()
		j, total := i+1, seg
		if h.gsoOK && seg <= h.gsoLimit {
			for j < len(fr) && j-i < vxGSOMaxSegs && fr[j].dst == f.dst {
				l := VXLANHdrLen + fr[j].len()
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
			b.iov = x.appendIOV(b.iov, b.hdr)
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

// appendIOV appends the iovecs of f's datagram.
func (f vxFrame) appendIOV(iov [][]byte, hdr []byte) [][]byte {
	if f.pay != nil {
		return append(iov, hdr, f.b, f.pay)
	}
	return append(iov, hdr, f.b)
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
			seg := int(binary.NativeEndian.Uint16(m.OOB[unix.CmsgLen(0):]))
			if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOPROTOOPT) {
				h.gsoOK = false
			} else {
				h.gsoLimit = min(h.gsoLimit, seg-1)
			}
			log.Printf("vxlan: UDP GSO of %d-byte datagrams refused (%v); sending them one by one", seg, errors.Unwrap(err))
			// Each datagram is whole iovecs of seg bytes (the last
			// may be shorter).
			var one []ipv4.Message
			var ones []int
			for k, at, l := 0, 0, 0; k < len(m.Buffers); k++ {
				l += len(m.Buffers[k])
				if l >= seg || k == len(m.Buffers)-1 {
					one = append(one, ipv4.Message{Buffers: m.Buffers[at : k+1 : k+1], Addr: m.Addr})
					ones = append(ones, 1)
					at, l = k+1, 0
				}
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
