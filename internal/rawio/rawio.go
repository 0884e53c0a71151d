// Package rawio makes the data path's system calls (a tap's readv and
// writev, the vxlan tux's sendmmsg and recvmmsg, a UML bess socket's
// batches) raw, outside the runtime's syscall state, on descriptors that
// never block (waiting is the poller's, through a syscall.RawConn).
//
// Why: such a call moving a 64 KiB super frame runs the receiving side's
// network stack inside it, often longer than the 20 µs after which the
// runtime's sysmon hands the goroutine's P to another thread; it did so
// at nearly every call, and the switch spent a fifth of its CPU waking
// threads and in sysmon itself (bench/vxlan: 2.15 CPU s/GB with
// unix.Writev and x/net's ReadBatch/WriteBatch, 1.69 with raw calls). A
// raw call that does not block holds its P like any other computation.
// golang.org/x/net's batch calls have no raw form, hence MMsgHdr here.
package rawio

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IOV is readv or writev (trap) of bufs on fd; empty buffers are left
// out. At most 4 buffers.
func IOV(trap uintptr, fd uintptr, bufs [][]byte) (int, syscall.Errno) {
	var iov [4]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) > 0 {
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
	}
	r, _, e := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// MMsgHdr is struct mmsghdr (the Go layout pads it as C does).
type MMsgHdr struct {
	Hdr unix.Msghdr
	N   uint32
}

// MMsg is sendmmsg or recvmmsg (trap) of hs on fd, not waiting: how many
// messages went or came.
func MMsg(trap uintptr, fd uintptr, hs []MMsgHdr) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
