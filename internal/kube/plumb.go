package kube

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Netlink is the real Plumber: it runs in the switch pod (host network,
// host pids, privileged).
type Netlink struct {
	Proc string // the host's /proc (hostPID: /proc)
}

// PodPID scans the host's processes for one in the pod's cgroup (the
// kubelet names it pod<UID>, with '_' for '-' under the systemd driver)
// and in a network namespace other than the switch's own.
func (n Netlink) PodPID(uid string) int {
	proc := n.Proc
	if proc == "" {
		proc = "/proc"
	}
	keys := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	self, _ := os.Readlink(filepath.Join(proc, "self/ns/net"))
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cgroup"))
		if err != nil || !(strings.Contains(string(b), keys[0]) || strings.Contains(string(b), keys[1])) {
			continue
		}
		if ns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns/net")); err == nil && ns != self {
			return pid
		}
	}
	return 0
}

// Move puts ifname into pid's network namespace as name (the pod's own
// eth0 from its network plugin is renamed k8s0 first, so the lab's eth0
// can have its name), sets mac and brings it up.
func (Netlink) Move(ifname string, pid int, name, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("tap %s: %v", ifname, err)
	}
	if err := netlink.LinkSetNsPid(l, pid); err != nil {
		return fmt.Errorf("moving %s into pid %d's namespace: %v", ifname, pid, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if old, err := h.LinkByName(name); err == nil && old.Type() == "veth" {
		_ = h.LinkSetDown(old)
		if err := h.LinkSetName(old, "k8s0"); err != nil {
			return fmt.Errorf("renaming the pod's %s (its network plugin's) to k8s0: %v", name, err)
		}
		_ = h.LinkSetUp(old)
	}
	l, err = h.LinkByName(ifname)
	if err != nil {
		return err
	}
	if err := h.LinkSetName(l, name); err != nil {
		return fmt.Errorf("naming %s %s in the pod: %v", ifname, name, err)
	}
	if err := h.LinkSetHardwareAddr(l, hw); err != nil {
		return err
	}
	return h.LinkSetUp(l)
}
