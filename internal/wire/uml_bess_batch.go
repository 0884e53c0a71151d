package wire

// Batched, raw system calls for the bess transport: one recvmmsg takes
// every packet a UML guest has queued (up to bessBatch), one sendmmsg
// gives it a burst. Before, each 1500-byte packet cost the switch a read
// through the runtime's poller (and a copy out of a 64 KiB buffer) and
// each frame toward the guest a write(2) in syscall state.

import (
	"syscall"

	"golang.org/x/sys/unix"

	"cloonix/internal/fabric"
	"cloonix/internal/rawio"
)

const bessBatch = 32

// bessRx is the reader's batch. Slot 0 always has room for the largest
// frame; the other slots have a standard frame's room (fabric.NewFrame's
// small class: a 1500-MTU frame with VLAN tags) unless this peer has
// sent a larger packet, after which every slot is large. UML's vector
// driver sends at most its MTU (1500 unless told otherwise) plus the
// Ethernet header, so the large slots are for a peer that is not a
// standard guest; a packet too large for a small slot is truncated by the
// kernel and dropped as a truncated packet always was.
type bessRx struct {
	hs   []rawio.MMsgHdr
	iov  []unix.Iovec
	fs   []*fabric.Frame // the slots' frames for the next call
	got  []*fabric.Frame // received, not yet returned
	next int             // got[next] is the next to return
	big  bool            // the peer sends frames larger than a small slot
	eof  bool            // the peer closed after the frames in got
}

func newBessRx() bessRx {
	r := bessRx{hs: make([]rawio.MMsgHdr, bessBatch), iov: make([]unix.Iovec, bessBatch), fs: make([]*fabric.Frame, bessBatch)}
	for k := range r.hs {
		r.hs[k].Hdr.Iov = &r.iov[k]
		r.hs[k].Hdr.SetIovlen(1)
	}
	return r
}

// slotSize is the room of slot k.
func (r *bessRx) slotSize(k int) int {
	if k == 0 || r.big {
		return fabric.MaxFrame
	}
	return fabric.StdFrameRoom
}

// fill waits for packets and receives a batch into got. The slots'
// frames not used go back at once, so an idle guest holds no buffers.
func (r *bessRx) fill(rc syscall.RawConn) error {
	r.got, r.next = r.got[:0], 0
	for k := range r.hs {
		f := fabric.NewFrame(r.slotSize(k))
		r.fs[k] = f
		buf := f.Buf()[:r.slotSize(k)]
		r.iov[k].Base = &buf[0]
		r.iov[k].SetLen(len(buf))
		r.hs[k].Hdr.Flags = 0
		r.hs[k].N = 0
	}
	var n int
	var e syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		n, e = rawio.MMsg(unix.SYS_RECVMMSG, fd, r.hs)
		return e != unix.EAGAIN && e != unix.EINTR
	})
	if err == nil && e != 0 {
		err, n = e, 0
	}
	for k := 0; k < n; k++ {
		f, m := r.fs[k], &r.hs[k]
		r.fs[k] = nil
		switch {
		case m.N == 0 && m.Hdr.Flags&unix.MSG_TRUNC == 0:
			// A zero-length packet on a seqpacket socket is the peer's close.
			f.Release()
			r.eof = true
		case m.N < fabric.MinFrame || m.Hdr.Flags&unix.MSG_TRUNC != 0:
			f.Release()
			r.big = r.big || m.Hdr.Flags&unix.MSG_TRUNC != 0
		default:
			f.N = int(m.N)
			r.big = r.big || f.N > fabric.StdFrameRoom
			r.got = append(r.got, f.Shrink())
		}
		if r.eof {
			n = k + 1
			break
		}
	}
	for k := n; k < len(r.fs); k++ {
		if r.fs[k] != nil {
			r.fs[k].Release()
			r.fs[k] = nil
		}
	}
	return err
}

// bessTx is WriteNow's batch.
type bessTx struct {
	hs  []rawio.MMsgHdr
	iov []unix.Iovec
}

// send writes fs as one packet each without waiting: how many the socket
// took, and an error other than a full socket.
func (t *bessTx) send(fd uintptr, fs []*fabric.Frame) (int, error) {
	sent := 0
	for sent < len(fs) {
		run := fs[sent:]
		if len(run) > bessBatch {
			run = run[:bessBatch]
		}
		if t.hs == nil {
			t.hs, t.iov = make([]rawio.MMsgHdr, bessBatch), make([]unix.Iovec, bessBatch)
		}
		for k, f := range run {
			b := f.Bytes()
			t.iov[k].Base = &b[0]
			t.iov[k].SetLen(len(b))
			t.hs[k].Hdr = unix.Msghdr{Iov: &t.iov[k]}
			t.hs[k].Hdr.SetIovlen(1)
		}
		n, e := rawio.MMsg(unix.SYS_SENDMMSG, fd, t.hs[:len(run)])
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return sent, nil
		case e != 0:
			return sent, e
		}
		sent += n
		if n < len(run) {
			return sent, nil // the socket is full
		}
	}
	return sent, nil
}
