package tux

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The data path's system calls (a tap's readv and writev, the vxlan
// tux's sendmmsg and recvmmsg) are made raw, outside the runtime's
// syscall state, on descriptors that never block (waiting is the
// poller's, through a RawConn). Why: such a call moving a 64 KiB super
// frame runs the receiving side's network stack inside it, often longer
// than the 20 µs after which the runtime's sysmon hands the goroutine's P
// to another thread; it did so at nearly every call, and the switch
// spent a fifth of its CPU waking threads and in sysmon itself
// (bench/vxlan: 2.15 CPU s/GB with unix.Writev and x/net's
// ReadBatch/WriteBatch, 1.69 with raw calls). A raw call that does not
// block holds its P like any other computation. golang.org/x/net's batch
// calls have no raw form, hence the mmsghdr here.

// rawIOV is readv or writev (trap) of bufs on fd; empty buffers are
// left out. At most 4 buffers.
func rawIOV(trap uintptr, fd uintptr, bufs [][]byte) (int, syscall.Errno) {
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

// mmsghdr is struct mmsghdr (the Go layout pads it as C does).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// rawMMsg is sendmmsg or recvmmsg (trap) of hs on fd, not waiting.
func rawMMsg(trap uintptr, fd uintptr, hs []mmsghdr) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// sockaddr is a struct sockaddr_in or sockaddr_in6, as the kernel takes
// and gives it.
type sockaddr struct {
	raw [unix.SizeofSockaddrInet6]byte
	n   uint32
}

func sockaddrOf(ap netip.AddrPort) sockaddr {
	var s sockaddr
	a := ap.Addr()
	if a.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.raw[0]))
		sa.Family = unix.AF_INET
		sa.Addr = a.As4()
		s.n = unix.SizeofSockaddrInet4
	} else {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&s.raw[0]))
		sa.Family = unix.AF_INET6
		sa.Addr = a.As16()
		s.n = unix.SizeofSockaddrInet6
	}
	binary.BigEndian.PutUint16(s.raw[2:4], ap.Port()) // sin_port and sin6_port
	return s
}

// addrPort reads an address the kernel gave (n bytes of it); IPv4-mapped
// IPv6 addresses come back as IPv4. Not valid for other families.
func (s *sockaddr) addrPort(n uint32) netip.AddrPort {
	port := binary.BigEndian.Uint16(s.raw[2:4])
	switch fam := *(*uint16)(unsafe.Pointer(&s.raw[0])); {
	case fam == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(s.raw[4:8])), port)
	case fam == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(s.raw[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}
