package tux

// The sending half of the vxlan helper: batches of frames from the
// switch become VXLAN datagrams (sendmmsg, UDP GSO where the kernel has
// it), super frames cut on the way.

import (
	"encoding/binary"
	"fmt"
	"log"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"cloonix/internal/rawio"
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

	msgs []vxMsg
	hs   []rawio.MMsgHdr
	iov  []unix.Iovec
	oob  []byte
}

// vxMsg is one message of a send: frames[fi:fj] to remote dst, as one
// GSO send of seg-byte datagrams when seg > 0.
type vxMsg struct {
	fi, fj, dst, seg int
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
		b.h.drop(vxDropOversize, netip.AddrPort{})
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
		b.h.drop(vxDropOversize, netip.AddrPort{})
	}
}

// flush sends the batch: floods as one datagram per remote, runs to one
// remote as GSO sends when possible.
func (b *vxTx) flush() {
	h := b.h
	b.msgs = b.msgs[:0]
	fr := b.frames
	for i := 0; i < len(fr); {
		f := fr[i]
		if f.dst < 0 {
			for r := range h.remotes {
				b.msgs = append(b.msgs, vxMsg{fi: i, fj: i + 1, dst: r})
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
		m := vxMsg{fi: i, fj: j, dst: f.dst}
		if j-i > 1 {
			h.gsoSends.Add(1)
			m.seg = seg
		}
		b.msgs = append(b.msgs, m)
		i = j
	}
	b.send(b.msgs)
	h.txF.Add(uint64(len(fr)))
	h.txB.Add(b.bytes)
	clear(b.frames)
	b.frames, b.segOff, b.bytes = b.frames[:0], 0, 0
}

// build fills b.hs (and the iovecs and control data it points to) for
// msgs.
func (b *vxTx) build(msgs []vxMsg) []rawio.MMsgHdr {
	b.iov, b.oob, b.hs = b.iov[:0], b.oob[:0], b.hs[:0]
	// Pointers into iov and oob are taken once they are complete (an
	// append may move them).
	for _, m := range msgs {
		for _, f := range b.frames[m.fi:m.fj] {
			b.iov = appendIovec(appendIovec(appendIovec(b.iov, b.hdr), f.b), f.pay)
		}
		if m.seg > 0 {
			b.oob = appendGSO(b.oob, uint16(m.seg))
		}
	}
	iv, ob := 0, 0
	for _, m := range msgs {
		at := iv
		for _, f := range b.frames[m.fi:m.fj] {
			iv += 2
			if len(f.pay) > 0 {
				iv++
			}
		}
		sa := &b.h.sockaddrs[m.dst]
		var hd rawio.MMsgHdr
		hd.Hdr.Name, hd.Hdr.Namelen = &sa.raw[0], sa.n
		hd.Hdr.Iov = &b.iov[at]
		hd.Hdr.SetIovlen(iv - at)
		if m.seg > 0 {
			l := unix.CmsgSpace(2)
			hd.Hdr.Control = &b.oob[ob]
			hd.Hdr.SetControllen(l)
			ob += l
		}
		b.hs = append(b.hs, hd)
	}
	return b.hs
}

// appendIovec appends an iovec for p unless it is empty.
func appendIovec(iov []unix.Iovec, p []byte) []unix.Iovec {
	if len(p) == 0 {
		return iov
	}
	v := unix.Iovec{Base: &p[0]}
	v.SetLen(len(p))
	return append(iov, v)
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

// send writes msgs with sendmmsg. A GSO send the kernel refuses (path
// MTU below the datagram, no checksum offload) is sent again datagram by
// datagram, and such sizes go without GSO from then on; any other
// refusal drops the datagrams, counted.
func (b *vxTx) send(msgs []vxMsg) {
	h := b.h
	for len(msgs) > 0 {
		hs := b.build(msgs)
		var n int
		var e syscall.Errno
		err := h.rc.Write(func(fd uintptr) bool {
			n, e = rawio.MMsg(unix.SYS_SENDMMSG, fd, hs)
			return e != unix.EAGAIN && e != unix.EINTR
		})
		if err != nil {
			e = syscall.EBADF // the socket is closed
		}
		if e == 0 {
			msgs = msgs[n:]
			continue
		}
		m := msgs[0]
		msgs = msgs[1:]
		if m.seg > 0 && e != syscall.EBADF {
			if e == syscall.EIO || e == syscall.EOPNOTSUPP || e == syscall.ENOPROTOOPT {
				h.gsoOK = false
			} else {
				h.gsoLimit = min(h.gsoLimit, m.seg-1)
			}
			log.Printf("vxlan: UDP GSO of %d-byte datagrams refused (%v); sending them one by one", m.seg, e)
			ones := make([]vxMsg, 0, m.fj-m.fi)
			for k := m.fi; k < m.fj; k++ {
				ones = append(ones, vxMsg{fi: k, fj: k + 1, dst: m.dst})
			}
			b.send(ones)
			continue
		}
		h.drops[vxDropSend].Add(uint64(m.fj - m.fi))
		x := &vxErr{at: time.Now(), msg: fmt.Sprintf("sending to %v: %v", h.remotes[m.dst], e)}
		if old := h.lastErr.Swap(x); old == nil || old.msg != x.msg {
			log.Print("vxlan: ", x.msg)
		}
	}
}
