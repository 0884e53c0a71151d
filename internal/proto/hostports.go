package proto

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Host ports a slirp gateway may reach (<slirp_host_ports>), and the
// records of the lab's own listeners (work_dir/listeners), which the
// switch and `cloonix graph` write and the slirp helper reads: the format
// they share lives here (docs/security.md).

// PortSet is a set of TCP/UDP port ranges.
type PortSet [][2]int

// Has tells whether p is in the set.
func (s PortSet) Has(p int) bool {
	for _, r := range s {
		if p >= r[0] && p <= r[1] {
			return true
		}
	}
	return false
}

// ParsePorts reads "22,4713,8000-8999" or "none" (an empty set); "" is a
// nil set (no allow-list).
func ParsePorts(s string) (PortSet, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	set := PortSet{}
	if s == "none" {
		return set, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		lo, hi, isRange := strings.Cut(f, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
			return nil, fmt.Errorf("%q: want ports or ranges 1-65535 separated by commas (e.g. 22,8000-8999), or none", f)
		}
		set = append(set, [2]int{a, b})
	}
	return set, nil
}

// RegisterListener records port under dir; the returned function removes
// the record. Errors are ignored: the record is a defence in depth.
func RegisterListener(dir, name string, port int) func() {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return func() {}
	}
	p := filepath.Join(dir, fmt.Sprintf("%d.%s.%d", port, name, os.Getpid()))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return func() {}
	}
	f.Close()
	return func() { _ = os.Remove(p) }
}

// ListenerPorts reads the ports recorded under dir whose process is alive.
func ListenerPorts(dir string) map[int]bool {
	f, err := os.Open(dir)
	if err != nil {
		return map[int]bool{}
	}
	defer f.Close()
	return ListenerPortsIn(f)
}

// ListenerPortsIn is ListenerPorts through an open directory, read again
// from its start (reading an open directory needs no permission).
func ListenerPortsIn(d *os.File) map[int]bool {
	ports := map[int]bool{}
	if d == nil {
		return ports
	}
	if _, err := d.Seek(0, io.SeekStart); err != nil {
		return ports
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return ports
	}
	for _, name := range names {
		f := strings.Split(name, ".")
		if len(f) != 3 {
			continue
		}
		port, err1 := strconv.Atoi(f[0])
		pid, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || port <= 0 || port > 65535 {
			continue
		}
		if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
			continue // its process is gone
		}
		ports[port] = true
	}
	return ports
}
