package tux

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket addresses as the raw batch calls (package rawio) take and give them.

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
