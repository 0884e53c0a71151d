package hosttap

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpen(t *testing.T) {
	if _, err := Open("a-name-far-too-long-for-linux", 0); err == nil {
		t.Fatal("a 29-byte interface name was taken")
	}
	if os.Geteuid() != 0 {
		t.Skip("makes a tap: run it as root (make test does)")
	}
	// In a network namespace of the test's own, so nothing shows on the host.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- openAndCheck()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func openAndCheck() error {
	f, err := Open("cxtest0", Offloads)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := Open("cxtest0", 0); !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("a second tap of the same name: %v, want EBUSY or EINVAL", err)
	}
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.TUNGETVNETHDRSZ)
	if err != nil || n != VnetHdrLen {
		return fmt.Errorf("header size %d (%v), want %d", n, err, VnetHdrLen)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return fmt.Errorf("flags %#x (%v): want non-blocking", fl, err)
	}
	return nil
}
