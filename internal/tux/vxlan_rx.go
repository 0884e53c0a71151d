package tux

// The receiving half of the vxlan tux: batches of datagrams (recvmmsg,
// UDP GRO where the kernel has it) become frames for the switch.

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"cloonix/internal/rawio"
	"cloonix/internal/wire"
)

// vxRx holds the buffers of one recvmmsg: vxBatch messages of up to
// vxBufSize bytes, each with room for its sender's address and control
// data (the GRO segment size).
type vxRx struct {
	hs    []rawio.MMsgHdr
	bufs  [][]byte
	iov   []unix.Iovec
	names []sockaddr
	oob   []byte

	macs    *wire.MACSet // the switch's, learns the sources
	lastSrc uint64
}

const vxOOBLen = 64 // control data room per message

func newVXRx(gro bool, macs *wire.MACSet) *vxRx {
	r := &vxRx{macs: macs, hs: make([]rawio.MMsgHdr, vxBatch), bufs: make([][]byte, vxBatch), iov: make([]unix.Iovec, vxBatch), names: make([]sockaddr, vxBatch)}
	if gro {
		r.oob = make([]byte, vxBatch*vxOOBLen)
	}
	for i := range r.hs {
		r.bufs[i] = make([]byte, vxBufSize)
		r.iov[i].Base = &r.bufs[i][0]
		r.iov[i].SetLen(vxBufSize)
		r.hs[i].Hdr.Iov = &r.iov[i]
		r.hs[i].Hdr.SetIovlen(1)
		r.hs[i].Hdr.Name = &r.names[i].raw[0]
		if gro {
			r.hs[i].Hdr.Control = &r.oob[i*vxOOBLen]
		}
	}
	return r
}

// recv waits for datagrams and receives a batch: how many messages.
func (r *vxRx) recv(rc syscall.RawConn) (int, error) {
	for i := range r.hs {
		h := &r.hs[i].Hdr
		h.Namelen = uint32(len(r.names[i].raw))
		if r.oob != nil {
			h.SetControllen(vxOOBLen)
		}
		h.Flags = 0
	}
	var n int
	var e syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		n, e = rawio.MMsg(unix.SYS_RECVMMSG, fd, r.hs)
		return e != unix.EAGAIN && e != unix.EINTR
	})
	if err != nil {
		return 0, err
	}
	if e != 0 {
		return 0, e
	}
	return n, nil
}

// receive checks the first n datagrams of r and passes each frame to
// put. With UDP GRO one message may hold several datagrams of one
// sender, all of the size the kernel reports but the last.
func (h *vxlanHelper) receive(r *vxRx, n int, put func([]byte) error) error {
	// Counted once per batch, not per frame (an atomic add each).
	var frames, nbytes uint64
	defer func() {
		h.rxF.Add(frames)
		h.rxB.Add(nbytes)
	}()
	for i := range n {
		m := &r.hs[i]
		from := r.names[i].addrPort(m.Hdr.Namelen)
		ri := h.remoteIndex(from)
		if ri < 0 {
			h.drop(vxDropSource, from)
			continue
		}
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
			h.drop(vxDropTruncated, from)
			continue
		}
		p := r.bufs[i][:m.N]
		seg := len(p)
		if h.gro && m.Hdr.Controllen > 0 {
			oob := r.oob[i*vxOOBLen : i*vxOOBLen+min(int(m.Hdr.Controllen), vxOOBLen)]
			if g := groSize(oob); g > 0 && g < seg {
				seg = g
				h.groRecvs.Add(1)
			}
		}
		for len(p) > 0 {
			d := p[:min(seg, len(p))]
			p = p[len(d):]
			vni, f, err := DecodeVXLAN(d)
			switch {
			case err == errVXShort:
				h.drop(vxDropShort, from)
				continue
			case err != nil:
				h.drop(vxDropFlags, from)
				continue
			case vni != h.cfg.VNI:
				h.drop(vxDropVNI, from)
				continue
			}
			h.learn(f[6:12], ri)
			if src := wire.MACOf(f[6:12]); src != r.lastSrc && f[6]&1 == 0 {
				r.lastSrc = r.macs.Learn(f)
			}
			if err := put(f); err != nil {
				return err
			}
			frames++
			nbytes += uint64(len(f))
		}
	}
	return nil
}

// groSize reads the UDP_GRO segment size from a message's control data.
func groSize(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) {
		hd := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(hd.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			return 0
		}
		if hd.Level == unix.SOL_UDP && hd.Type == unix.UDP_GRO && l >= unix.CmsgLen(2) {
			return int(binary.NativeEndian.Uint16(oob[unix.CmsgLen(0):]))
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(oob) {
			return 0
		}
		oob = oob[sp:]
	}
	return 0
}

// remoteIndex is the index of the remote a datagram came from, or -1.
func (h *vxlanHelper) remoteIndex(from netip.AddrPort) int {
	ip := from.Addr()
	if !ip.IsValid() {
		return -1
	}
	if len(h.cfg.Peers) > 0 {
		// An allow-list of sources: the port must match too.
		ok := false
		for _, p := range h.cfg.Peers {
			ok = ok || p == from
		}
		if !ok {
			return -1
		}
	}
	for i, r := range h.cfg.Remotes {
		if r == ip {
			return i
		}
	}
	return -1
}
