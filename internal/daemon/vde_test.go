package daemon

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// vdeClient does what libvdeplug does: a datagram socket bound to a path
// in the VDE directory, a request v3 on ctl, the switch's address back.
func vdeClient(t *testing.T, dir string) (net.Conn, int) {
	t.Helper()
	ctl, err := net.Dial("unix", filepath.Join(dir, "ctl"))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, ".client")
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: local}); err != nil {
		t.Fatal(err)
	}
	req := make([]byte, 122)
	binary.LittleEndian.PutUint32(req[0:], 0xfeedface)
	binary.LittleEndian.PutUint32(req[4:], 3)
	binary.LittleEndian.PutUint16(req[12:], syscall.AF_UNIX)
	copy(req[14:], local)
	if _, err := ctl.Write(append(req, "unit"...)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 110)
	ctl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := ctl.Read(reply); err != nil || n != 110 {
		t.Fatalf("reply %d %v", n, err)
	}
	os.Remove(local) // as libvdeplug does once connected
	return ctl, fd
}

func TestVDEFollowsLans(t *testing.T) {
	s := startSwitch(t)
	s.must("add_lan", "name", "lv")
	dir := filepath.Join(s.cfg.VDEDir(), "lv")
	waitFor(t, "VDE directory of lv", func() bool { _, err := os.Stat(filepath.Join(dir, "ctl")); return err == nil })
	ctl, fd := vdeClient(t, dir)
	defer syscall.Close(fd)
	waitFor(t, "a vde port on lv", func() bool {
		for _, p := range s.d.Lab().Ports {
			if p.Name == "vde:lv:1" && p.Kind == "vde" && len(p.Lans) == 1 && p.Lans[0] == "lv" {
				return true
			}
		}
		return false
	})
	// Leaving removes the port.
	ctl.Close()
	waitFor(t, "the vde port gone", func() bool { return s.d.Fab.Port("vde:lv:1") == nil })
	// The directory goes with the lan.
	s.must("del_lan", "name", "lv")
	waitFor(t, "VDE directory removed", func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) })
	// An implicit lan gets one too, and loses it with its last port.
	s.must("add_port", "name", "p1")
	s.must("attach", "port", "p1", "lan", "imp")
	waitFor(t, "VDE directory of imp", func() bool { _, err := os.Stat(filepath.Join(s.cfg.VDEDir(), "imp", "ctl")); return err == nil })
	s.must("detach", "port", "p1", "lan", "imp")
	waitFor(t, "VDE directory of imp removed", func() bool {
		_, err := os.Stat(filepath.Join(s.cfg.VDEDir(), "imp"))
		return os.IsNotExist(err)
	})
}
