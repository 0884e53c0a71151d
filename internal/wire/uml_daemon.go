package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloonix/internal/fabric"
)

// The uml_switch protocol (request v3), spoken by UML's legacy `daemon`
// transport (ethN=daemon,MAC,unix,CTL; Linux arch/um/drivers/daemon_user.c)
// and by VDE clients (libvdeplug's vde module, QEMU -nic vde, vde_plug):
//
//  1. the client connects a unix stream socket to the control socket and
//     writes struct request_v3 { u32 magic=0xfeedface; u32 version=3;
//     u32 type; struct sockaddr_un sock; [char description[]] } where
//     sock is the client's bound datagram socket (UML: an abstract name
//     of the full 108 bytes; VDE: a path);
//  2. the switch answers with a struct sockaddr_un (110 bytes): its own
//     datagram socket for this client;
//  3. frames then travel one per datagram, no header, both ways; the
//     client closing the control stream ends the connection.

const (
	switchMagic   = 0xfeedface
	switchVersion = 3
	sunPathLen    = 108
	sockaddrLen   = 2 + sunPathLen
	// requestLen is request_v3 without padding or description (VDE packs
	// it; UML's C struct pads it to 124).
	requestLen = 12 + sockaddrLen
)

// ErrBadRequest reports a control request that is not uml_switch v3.
var ErrBadRequest = errors.New("not a uml_switch/VDE request v3")

// ParseRequest decodes a request v3 and returns the client's data socket
// address as Go spells it: a path, or "@..." for an abstract name (kept at
// its full 108 bytes, since UML binds it with the full sockaddr length).
func ParseRequest(b []byte) (string, error) {
	if len(b) < requestLen {
		return "", fmt.Errorf("%w: %d bytes, want at least %d", ErrBadRequest, len(b), requestLen)
	}
	magic := binary.LittleEndian.Uint32(b[0:4])
	version := binary.LittleEndian.Uint32(b[4:8])
	if magic != switchMagic {
		return "", fmt.Errorf("%w: magic %#x", ErrBadRequest, magic)
	}
	if version != switchVersion {
		return "", fmt.Errorf("%w: version %d (only 3 is spoken)", ErrBadRequest, version)
	}
	// b[8:12] is the type (REQ_NEW_CONTROL, maybe with a port number
	// wished for in its upper bits): any port is fine.
	family := binary.LittleEndian.Uint16(b[12:14])
	if family != syscall.AF_UNIX {
		return "", fmt.Errorf("%w: address family %d is not AF_UNIX", ErrBadRequest, family)
	}
	path := b[14 : 14+sunPathLen]
	if path[0] == 0 {
		rest := path[1:]
		allZero := true
		for _, c := range rest {
			if c != 0 {
				allZero = false
				break
			}
		}
		if allZero {
			return "", fmt.Errorf("%w: empty client address", ErrBadRequest)
		}
		return "@" + string(rest), nil
	}
	n := 0
	for n < len(path) && path[n] != 0 {
		n++
	}
	return string(path[:n]), nil
}

// replyAddr encodes our data socket path as a struct sockaddr_un.
func replyAddr(path string) []byte {
	b := make([]byte, sockaddrLen)
	binary.LittleEndian.PutUint16(b[0:2], syscall.AF_UNIX)
	copy(b[2:], path)
	return b
}

// readRequest reads one request from a fresh control connection. The
// client writes it in one go; a short read waits for the rest.
func readRequest(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 512)
	n := 0
	for n < requestLen {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			if n >= requestLen {
				break
			}
			if err == io.EOF {
				return "", fmt.Errorf("%w: connection closed after %d bytes", ErrBadRequest, n)
			}
			return "", err
		}
	}
	return ParseRequest(buf[:n])
}

// dialDataSocket makes our datagram socket bound at path and connected to
// the client's socket (so only it may send to us, and a client that unlinks
// its socket file after the handshake, as libvdeplug does, still gets our
// frames).
func dialDataSocket(path, peer string) (*net.UnixConn, error) {
	if err := prepareUnixPath(path); err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*net.UnixConn, error) {
		syscall.Close(fd)
		_ = removeSocket(path)
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return fail(fmt.Errorf("bind %s: %v", path, err))
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: peer}); err != nil {
		return fail(fmt.Errorf("connect to the client's socket %q: %v", printable(peer), err))
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	f := os.NewFile(uintptr(fd), path)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		_ = removeSocket(path)
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

func printable(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x20 && s[i] < 0x7f {
			out = append(out, s[i])
		} else if len(out) == 0 || out[len(out)-1] != '.' {
			out = append(out, '.')
		}
	}
	return string(out)
}

// DaemonConn is one uml_switch/VDE client: its control stream and the
// datagram socket that carries its frames.
type DaemonConn struct {
	ctl   net.Conn
	data  *net.UnixConn
	path  string
	once  sync.Once
	done  chan struct{}
	Drops atomic.Uint64 // datagrams refused for their size
}

// Accept runs the handshake on a fresh control connection and makes the
// data socket at dataPath. On error ctl is closed.
func AcceptDaemon(ctl net.Conn, dataPath string) (*DaemonConn, error) {
	peer, err := readRequest(ctl)
	if err != nil {
		ctl.Close()
		return nil, err
	}
	data, err := dialDataSocket(dataPath, peer)
	if err != nil {
		ctl.Close()
		return nil, err
	}
	_ = ctl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := ctl.Write(replyAddr(dataPath)); err != nil {
		ctl.Close()
		data.Close()
		_ = removeSocket(dataPath)
		return nil, err
	}
	_ = ctl.SetWriteDeadline(time.Time{})
	d := &DaemonConn{ctl: ctl, data: data, path: dataPath, done: make(chan struct{})}
	// The client leaves by closing its control stream; anything it writes
	// there later is ignored.
	go func() {
		_, _ = io.Copy(io.Discard, ctl)
		d.Close()
	}()
	return d, nil
}

// ReadFrame returns the next datagram of a valid size.
func (d *DaemonConn) ReadFrame() (*fabric.Frame, error) {
	for {
		f := fabric.NewFrame(fabric.MaxFrame)
		n, _, flags, _, err := d.data.ReadMsgUnix(f.Buf(), nil)
		if err != nil {
			f.Release()
			return nil, err
		}
		if n < fabric.MinFrame || flags&syscall.MSG_TRUNC != 0 {
			f.Release()
			d.Drops.Add(1)
			continue
		}
		f.N = n
		return f.Shrink(), nil
	}
}

// WriteFrame sends one frame as one datagram. A client that went away
// without closing its control stream yet makes this fail; the frame is
// then lost, as on a cable with nobody at the end.
func (d *DaemonConn) WriteFrame(b []byte) error {
	_, err := d.data.Write(b)
	return err
}

// Flush does nothing: each datagram leaves at once.
func (d *DaemonConn) Flush() error { return nil }

// Close ends the connection and removes our data socket.
func (d *DaemonConn) Close() error {
	d.once.Do(func() {
		d.ctl.Close()
		d.data.Close()
		_ = removeSocket(d.path)
		close(d.done) // last: whoever waits on Done finds everything gone
	})
	return nil
}

// Done is closed when the client left or Close was called.
func (d *DaemonConn) Done() <-chan struct{} { return d.done }

// DaemonListener serves one switch port to uml_switch clients (UML's
// daemon transport): each control connection becomes the port's peer,
// replacing the previous one.
type DaemonListener struct {
	l    *net.UnixListener
	path string
	n    atomic.Uint64
}

// ListenDaemon listens on the control socket ctlPath; data sockets are
// made beside it.
func ListenDaemon(ctlPath string) (*DaemonListener, error) {
	l, err := unixListen("unix", ctlPath)
	if err != nil {
		return nil, err
	}
	return &DaemonListener{l: l, path: ctlPath}, nil
}

// Accept waits for a client and runs its handshake. A client that fails
// the handshake is dropped and the next one awaited.
func (l *DaemonListener) Accept() (fabric.Conn, error) {
	for {
		c, err := l.l.Accept()
		if err != nil {
			return nil, err
		}
		data := filepath.Join(filepath.Dir(l.path), fmt.Sprintf("%s.d%d", filepath.Base(l.path), l.n.Add(1)))
		d, err := AcceptDaemon(c, data)
		if err != nil {
			continue
		}
		return d, nil
	}
}

// Close stops listening and removes the control socket.
func (l *DaemonListener) Close() error { return l.l.Close() }

// Addr is the control socket path.
func (l *DaemonListener) Addr() string { return l.path }
