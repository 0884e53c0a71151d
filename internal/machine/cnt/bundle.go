package cnt

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Paths inside the container.
const (
	cfgMount   = "/.cloonix"        // the node's config, read-only
	initPath   = cfgMount + "/init" // pid 1
	shimPath   = cfgMount + "/systemctl"
	defaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Capabilities of a node's processes: Docker's default set plus what
// routers need (interfaces, routes, raw sockets, nice/locked memory,
// and CAP_SYS_ADMIN, without which FRR's zebra refuses to start). As
// guests are untrusted, the seccomp filter (denied) takes from
// CAP_SYS_ADMIN what would reach the host: mounting (which could make
// /proc/sys/kernel writable again), module and kexec loading, swap, BPF.
// Those the host itself lacks are left out (hostCaps).
var nodeCaps = map[string]int{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
	"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
	"CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14,
	"CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_MKNOD": 27,
	"CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}

// hostCaps is the capability bounding set of this process (all bits when
// unknown): a runtime cannot give what the host does not have.
func hostCaps() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ^uint64(0)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return n
			}
		}
	}
	return ^uint64(0)
}

// capsFor lists the node capabilities within the bounding set bnd.
func capsFor(bnd uint64) []string {
	var out []string
	for name, bit := range nodeCaps {
		if bnd&(1<<bit) != 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Read-only and masked paths: the usual runtime defaults, except that
// /proc/sys/net stays writable (it belongs to the node's own network
// namespace: routers set forwarding and rp_filter there).
var (
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger",
		"/proc/sys/kernel", "/proc/sys/vm", "/proc/sys/fs", "/proc/sys/dev", "/proc/sys/user",
		"/proc/sys/abi", "/proc/sys/debug", "/proc/sys/crypto",
	}
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
)

// denied are the system calls a node may not make (EPERM).
var denied = []string{
	"mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
	"fspick", "mount_setattr", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"swapon", "swapoff", "bpf", "open_by_handle_at", "name_to_handle_at", "reboot", "acct", "quotactl",
	"lookup_dcookie", "perf_event_open", "fanotify_init", "setdomainname", "iopl", "ioperm",
}

func seccomp() *specs.LinuxSeccomp {
	eperm := uint(1)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
		Syscalls:      []specs.LinuxSyscall{{Names: denied, Action: specs.ActErrno, ErrnoRet: &eperm}},
	}
}

// bundleSpec is what a node's config.json is made from.
type bundleSpec struct {
	Name     string
	RootPath string   // the overlay's merged directory
	Env      []string // the image's environment
	CfgDir   string   // host directory mounted at /.cloonix
	Shim     []string // paths in the rootfs where systemctl gets the shim
	Mem      int      // MB, 0: no limit
	CPU      int      // CPUs, 0: no limit
	Cgroup   string   // cgroups path
}

// pidsMax bounds a node's processes: a fork bomb in one guest must not
// take the host.
const pidsMax = 4096

// makeSpec builds the OCI runtime configuration of a node.
func makeSpec(b bundleSpec) *specs.Spec {
	env := []string{defaultEnv, "TERM=xterm", "HOME=/root", "container=cloonix"}
	for _, e := range b.Env {
		env = setEnv(env, e)
	}
	caps := capsFor(hostCaps())
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: b.Name,
		Root:     &specs.Root{Path: b.RootPath},
		Process: &specs.Process{
			Args: []string{"/bin/sh", initPath},
			Env:  env,
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755", "size=65536k"}},
			{Destination: cfgMount, Type: "bind", Source: b.CfgDir, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: b.Cgroup,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources:     resources(b.Mem, b.CPU),
			MaskedPaths:   maskedPaths,
			Seccomp:       seccomp(),
			ReadonlyPaths: readonlyPaths,
		},
	}
	for _, p := range b.Shim {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: p, Type: "bind", Source: filepath.Join(b.CfgDir, "systemctl"), Options: []string{"bind", "ro"}})
	}
	return s
}

func resources(mem, cpu int) *specs.LinuxResources {
	pids := int64(pidsMax)
	r := &specs.LinuxResources{
		Pids:    &specs.LinuxPids{Limit: pids},
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if mem > 0 {
		limit := int64(mem) << 20
		r.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if cpu > 0 {
		period := uint64(100000)
		quota := int64(cpu) * int64(period)
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	// runc's default devices (null, zero, full, random, urandom, tty,
	// ptmx, pts) are allowed on top of this deny-all.
	return r
}

// setEnv replaces or adds KEY=VALUE.
func setEnv(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// writeBundle writes dir/config.json.
func writeBundle(dir string, s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("bundle %s: %v", dir, err)
	}
	return nil
}
