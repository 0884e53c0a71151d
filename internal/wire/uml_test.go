package wire

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/fabric"
)

func request(addr []byte, version uint32, pad int) []byte {
	b := make([]byte, requestLen+pad)
	binary.LittleEndian.PutUint32(b[0:], switchMagic)
	binary.LittleEndian.PutUint32(b[4:], version)
	binary.LittleEndian.PutUint16(b[12:], syscall.AF_UNIX)
	copy(b[14:], addr)
	return b
}

func TestParseRequest(t *testing.T) {
	abstract := make([]byte, sunPathLen)
	copy(abstract[1:], []byte{1, 2, 3, 0, 4})
	cases := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{"vde path", request([]byte("/tmp/v/.01234-00000"), 3, 0), "/tmp/v/.01234-00000", false},
		{"uml padded abstract", request(abstract, 3, 2), "@" + string(abstract[1:]), false},
		{"with description", append(request([]byte("/x"), 3, 0), "vde_plug"...), "/x", false},
		{"short", request([]byte("/x"), 3, 0)[:50], "", true},
		{"version 2", request([]byte("/x"), 2, 0), "", true},
		{"bad magic", append([]byte{1, 2, 3, 4}, request([]byte("/x"), 3, 0)[4:]...), "", true},
		{"empty abstract", request(nil, 3, 0), "", true},
	}
	for _, c := range cases {
		got, err := ParseRequest(c.in)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("%s: got %q, %v", c.name, got, err)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(request([]byte("/tmp/a"), 3, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseRequest(b)
		if err == nil && (s == "" || len(s) > sunPathLen) {
			t.Fatalf("accepted odd address %q", s)
		}
	})
}

// umlClient does what daemon_user.c does: a datagram socket bound to an
// abstract name of the full sockaddr length, a request v3 on the control
// stream, the switch's address back.
func umlClient(t *testing.T, ctl string) (int, net.Conn, string) {
	t.Helper()
	c, err := net.Dial("unix", ctl)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := make([]byte, sunPathLen)
	copy(name[1:], []byte{byte(os.Getpid()), byte(os.Getpid() >> 8), 7, 0, 9})
	local := "@" + string(name[1:])
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: local}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(request(name, 3, 2)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 200)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(reply)
	if err != nil || n != sockaddrLen {
		t.Fatalf("reply: %d bytes, %v", n, err)
	}
	p := reply[2:n]
	return fd, c, string(p[:bytes.IndexByte(p, 0)])
}

func TestDaemonListenerUML(t *testing.T) {
	dir := t.TempDir()
	l, err := ListenDaemon(filepath.Join(dir, "eth0.ctl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan fabric.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			got <- c
		}
	}()
	fd, ctl, data := umlClient(t, l.Addr())
	defer syscall.Close(fd)
	var conn fabric.Conn
	select {
	case conn = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
	frame := bytes.Repeat([]byte{0xab}, 60)
	if err := syscall.Sendto(fd, frame, 0, &syscall.SockaddrUnix{Name: data}); err != nil {
		t.Fatal(err)
	}
	f, err := conn.ReadFrame()
	if err != nil || !bytes.Equal(f.Bytes(), frame) {
		t.Fatalf("switch read %v %v", f, err)
	}
	// A jumbo frame the other way, in one datagram.
	big := bytes.Repeat([]byte{0xcd}, 9000)
	if err := conn.WriteFrame(big); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 70000)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil || n != len(big) {
		t.Fatalf("client read %d %v", n, err)
	}
	// Closing the control stream ends the connection.
	ctl.Close()
	select {
	case <-conn.(*DaemonConn).Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection outlived its control stream")
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("data socket %s left behind: %v", data, err)
	}
}

func TestDaemonBadRequest(t *testing.T) {
	dir := t.TempDir()
	l, err := ListenDaemon(filepath.Join(dir, "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go l.Accept()
	c, err := net.Dial("unix", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(bytes.Repeat([]byte("x"), requestLen))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatalf("bad request answered with %d bytes", n)
	}
}

func TestVDEDirPlugs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lan")
	plugs := make(chan *DaemonConn, 2)
	v, err := ListenVDE(dir, func(d *DaemonConn) { plugs <- d })
	if err != nil {
		t.Fatal(err)
	}
	fd1, _, _ := umlClient(t, filepath.Join(dir, "ctl"))
	defer syscall.Close(fd1)
	var p *DaemonConn
	select {
	case p = <-plugs:
	case <-time.After(5 * time.Second):
		t.Fatal("no plug")
	}
	v.Close()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("plug outlived its directory")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s left behind", dir)
	}
}

func TestBessRoundTrip(t *testing.T) {
	conn, c := bessPair(t)
	c.Write([]byte("short"))             // dropped, stream stays in step
	c.Write(bytes.Repeat([]byte{1}, 64)) // one frame
	f, err := conn.ReadFrame()
	if err != nil || f.N != 64 {
		t.Fatalf("got %v %v", f, err)
	}
	if err := conn.WriteFrame(bytes.Repeat([]byte{2}, 65535)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 70000)
	n, err := c.Read(buf)
	if err != nil || n != 65535 {
		t.Fatalf("client got %d %v", n, err)
	}
	c.Close()
	if _, err := conn.ReadFrame(); err == nil {
		t.Fatal("no error after peer closed")
	}
}

// TestBessWriteNow: frames written from the caller arrive in order; when
// the guest does not read, what the socket does not take is kept and
// Flush delivers it, still in order, once the guest reads again.
func TestBessWriteNow(t *testing.T) {
	conn, c := bessPair(t)
	frame := func(i int) *fabric.Frame {
		f := fabric.NewFrame(1500)
		binary.BigEndian.PutUint32(f.Bytes(), uint32(i))
		return f
	}
	// Far more than the socket holds (4 MiB asked): some must be kept.
	const n = 8000
	kept := false
	for i := 0; i < n; i += 100 {
		fs := make([]*fabric.Frame, 100)
		for j := range fs {
			fs[j] = frame(i + j)
		}
		k, err := conn.WriteNow(fs)
		if err != nil {
			t.Fatal(err)
		}
		kept = kept || k
		for _, f := range fs {
			f.Release()
		}
	}
	if !kept {
		t.Fatalf("%d frames of 1500 bytes never filled the socket", n)
	}
	done := make(chan error, 1)
	go func() { done <- conn.Flush() }()
	buf := make([]byte, 2000)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < n; i++ {
		m, err := c.Read(buf)
		if err != nil || m != 1500 || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("packet %d: %d bytes, number %d, %v", i, m, binary.BigEndian.Uint32(buf), err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
