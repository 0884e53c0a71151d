package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MgmtMACPrefix starts the MAC of a guest's management interface (the
// machine manager's MgmtMAC); the agent names that NIC mgmt0 and leaves
// it out of the ethN numbering.
const MgmtMACPrefix = "02:c0:"

// MgmtIf is the management interface's name in every guest.
const MgmtIf = "mgmt0"

// ethNames decides the renames so that a VM's eths are eth0, eth1, ...
// in order: UML's vector devices vecN become ethN; other Ethernet devices
// (QEMU NICs) are numbered in the order of their bus address. devs maps
// an interface name to its sysfs device path ("" for none); mgmt is the
// management NIC ("" for none), named mgmt0 and not counted.
func ethNames(devs map[string]string, mgmt string) map[string]string {
	out := map[string]string{}
	if mgmt != "" {
		out[mgmt] = MgmtIf
	}
	var vec, bus []string
	for n, dev := range devs {
		switch {
		case n == mgmt:
		case strings.HasPrefix(n, "vec"):
			if _, err := strconv.Atoi(n[3:]); err == nil {
				vec = append(vec, n)
			}
		case dev != "":
			bus = append(bus, n)
		}
	}
	if len(vec) > 0 {
		for _, n := range vec {
			out[n] = "eth" + n[3:]
		}
		return out
	}
	sort.Slice(bus, func(i, j int) bool { return devs[bus[i]] < devs[bus[j]] })
	for i, n := range bus {
		out[n] = "eth" + strconv.Itoa(i)
	}
	return out
}

// fixEthNames renames the interfaces as ethNames says (through temporary
// names, since targets may be taken) and brings lo and the eths up (UML's
// vector eths connect to the switch when they go up).
func fixEthNames(logf func(string, ...any)) {
	ents, _ := os.ReadDir("/sys/class/net")
	devs := map[string]string{}
	mgmt := ""
	for _, e := range ents {
		n := e.Name()
		typ, _ := os.ReadFile(filepath.Join("/sys/class/net", n, "type"))
		if strings.TrimSpace(string(typ)) != "1" { // ARPHRD_ETHER only
			continue
		}
		if mac, _ := os.ReadFile(filepath.Join("/sys/class/net", n, "address")); strings.HasPrefix(string(mac), MgmtMACPrefix) {
			mgmt = n
		}
		dev, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", n, "device"))
		if err != nil {
			dev = ""
		}
		devs[n] = dev
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		logf("net: %v", err)
		return
	}
	defer unix.Close(fd)
	renames := ethNames(devs, mgmt)
	tmp := map[string]string{}
	for from, to := range renames {
		if from == to {
			continue
		}
		t := "cxtmp" + strings.TrimPrefix(to, "eth")
		setUp(fd, from, false)
		if err := rename(fd, from, t); err != nil {
			logf("net: rename %s: %v", from, err)
			continue
		}
		tmp[t] = to
	}
	for t, to := range tmp {
		if err := rename(fd, t, to); err != nil {
			logf("net: rename %s to %s: %v", t, to, err)
		}
	}
	if err := setUp(fd, "lo", true); err != nil {
		logf("net: lo: %v", err)
	}
	ents, _ = os.ReadDir("/sys/class/net")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "eth") || e.Name() == MgmtIf {
			if err := setUp(fd, e.Name(), true); err != nil {
				logf("net: %s up: %v", e.Name(), err)
			}
		}
	}
}

func rename(fd int, from, to string) error {
	var ifr [40]byte // struct ifreq: name, then ifr_newname
	copy(ifr[:unix.IFNAMSIZ-1], from)
	copy(ifr[unix.IFNAMSIZ:unix.IFNAMSIZ+unix.IFNAMSIZ-1], to)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFNAME, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return e
	}
	return nil
}

func setUp(fd int, name string, up bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	fl := ifr.Uint16()
	if up {
		fl |= unix.IFF_UP
	} else {
		fl &^= unix.IFF_UP
	}
	ifr.SetUint16(fl)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
