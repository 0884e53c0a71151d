package machine

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"cloonix/internal/proto"
)

// A node kind is one way of running a guest: QEMU (qemu.go), UML
// (uml.go), and the container kind (cnt/) plug in here. Each is the one
// home of its policy: defaults, checks, kernel and image choice, command
// line. The daemon keeps only the table of guests and the verbs.

// Kind is one node kind.
type Kind interface {
	// Name is the add_vm type, e.g. "kvm".
	Name() string
	// Check validates s and fills in its defaults and everything it
	// resolves (image, kernel, programs, Dir, eth sockets) without
	// changing anything on the host. Start is given only checked specs.
	Check(s *Spec) error
	// Start prepares the guest's files in s.Dir (which exists and is
	// empty) and launches it; it returns once the guest runs (booting).
	// The switch ports of s.Ports() exist by then.
	// With s.KeepDisk it boots from the disk a previous run left in s.Dir.
	Start(s Spec, ev Events) (Guest, error)
	// SaveDisk writes a standalone image of the guest's disk in s.Dir to
	// dst (a new file) that boots with --rootfs dst; the reference image
	// is only read. g is the guest while it runs (it is paused or synced
	// for the copy), nil when stopped. progress may be nil.
	SaveDisk(s *Spec, g Guest, dst string, progress func(done, total int64)) error
}

// Guest is one started guest of any kind.
type Guest interface {
	// Pid is the guest's main process (emulator, or container init).
	Pid() int
	// State is the current state (Booting...) and why.
	State() (state, detail string)
	// WaitSettled waits until the state is no longer booting, or ctx ends.
	WaitSettled(ctx context.Context) (state, detail string)
	// AwaitAgent waits up to d for a booting guest to settle; one still
	// booting then is an error wrapping ErrNotRunning.
	AwaitAgent(ctx context.Context, d time.Duration) error
	// Exec runs argv in the guest (agent line, or container runtime).
	Exec(ctx context.Context, argv []string, stdin []byte) (stdout, stderr []byte, code int, err error)
	// ConsolePath is the unix socket `cloonix console` connects to;
	// ConsoleLog keeps what the console printed.
	ConsolePath() string
	ConsoleLog() string
	// Stop kills the guest and waits for it.
	Stop()
	// Shutdown powers the guest off cleanly, waiting up to d, then stops
	// it hard; its disk stays in Dir for a Start with KeepDisk.
	Shutdown(d time.Duration)
	// SetLink sets the carrier the guest sees on its eth; ErrNoCarrier
	// when the kind cannot show one (the switch still stops the frames).
	SetLink(eth int, up bool) error
	// Exited is closed once the guest is gone.
	Exited() <-chan struct{}
	// Accelerator is kvm or tcg for QEMU, "" for the other kinds.
	Accelerator() string
	// DefaultBootTimeout is how long this guest may take to answer.
	DefaultBootTimeout() time.Duration
	// Ports are the switch ports of its eths, as its spec gave them.
	Ports() []Port
}

// Limits of add_vm: proto's, the one place they are written.
const (
	MinMem  = proto.MinMem // MB
	MaxMem  = proto.MaxMem // MB; the host's memory is the real bound
	MaxCPU  = proto.MaxCPU
	MaxEths = proto.MaxEths
)

// Unset in Spec.Mem, CPU or Eths means "not given: the kind's default".
const Unset = math.MinInt

// Host is the switch's configuration a kind needs.
type Host struct {
	BulkDir string // images and kernels
	WorkDir string // the guests' directories
	Accel   string // <accel>: auto, kvm or tcg
	// OCIRuntime is <oci_runtime>: the container nodes' runtime ("": runc).
	OCIRuntime string
}

// Port is what the switch must offer for one eth before the guest starts.
type Port struct {
	Kind string // the switch's port kind: stream, bess, daemon
	Path string // its socket (or whatever names the eth to that port kind)
}

// Ports are the switch ports of eth0, eth1, ... (set by Check).
func (s *Spec) Ports() []Port {
	p := make([]Port, len(s.EthSocks))
	for i, sock := range s.EthSocks {
		p[i] = Port{Kind: s.PortKind, Path: sock}
	}
	return p
}

// MgmtPort is the switch port of mgmt0, if the guest has one: one more
// NIC, after the eths, whose MAC is MgmtMAC (the agent names it mgmt0).
func (s *Spec) MgmtPort() (Port, bool) {
	if s.Mgmt == "" || s.MgmtSock == "" {
		return Port{}, false
	}
	return Port{Kind: s.PortKind, Path: s.MgmtSock}, true
}

// Registry is an explicit list of node kinds; the first is the default.
// The list the switch offers is kinds.All.
type Registry struct{ kinds []Kind }

// NewRegistry makes a registry of kinds, the first being the default.
func NewRegistry(kinds ...Kind) *Registry { return &Registry{kinds: kinds} }

// Names are the kinds' names, the default first.
func (r *Registry) Names() []string {
	var n []string
	for _, k := range r.kinds {
		n = append(n, k.Name())
	}
	return n
}

// QueuedBoots is a kind whose boots the switch runs a few at a time
// (BootSlots), queueing the others: a boot that is CPU work of a kind that
// slows down more than in proportion when many share the cores. UML is
// one: each guest process is a host process under ptrace, and a new
// guest's kernel init and page faults contend badly (docs/benchmarks.md,
// bench/scale: 100 guests at once on 2 vCPUs took 192 s and 3.4 CPU-s
// each; 4 at a time, 77 s and 1.2).
type QueuedBoots interface{ QueuedBoots() bool }

// BootSlots is how many boots of QueuedBoots kinds run at once: two per
// core (bench/scale on 2 vCPUs: 2, 4 and 8 slots gave 81, 77 and 84 s).
func BootSlots() int { return max(2, 2*runtime.NumCPU()) }

// BootSlotHold is how long a queued boot holds its slot at most: a guest
// whose agent never answers must not stall the queue (a UML busybox
// guest is ready in about a second alone, a few seconds among 100).
const BootSlotHold = 30 * time.Second

// aliaser is a kind known under more names than Name.
type aliaser interface{ Aliases() []string }

// Lookup finds a kind by type, case-insensitive; "" is the default.
func (r *Registry) Lookup(typ string) (Kind, error) {
	t := strings.ToLower(strings.TrimSpace(typ))
	if t == "" && len(r.kinds) > 0 {
		return r.kinds[0], nil
	}
	for _, k := range r.kinds {
		if k.Name() == t {
			return k, nil
		}
		if a, ok := k.(aliaser); ok {
			for _, n := range a.Aliases() {
				if n == t {
					return k, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("type %q: use %s", typ, strings.Join(r.Names(), " or "))
}

// CheckBasics applies what every kind checks: memory, CPUs and eths
// (filling defaults), the guest's directory and the length of its socket
// paths; it sets CD.Name and CD.Eths. maxCPU of 1 refuses SMP.
func CheckBasics(s *Spec, defMem, maxCPU int) error {
	if s.Mem == Unset {
		s.Mem = defMem
	}
	if hi := hostMemMB(); s.Mem < MinMem || s.Mem > hi {
		return fmt.Errorf("vm %s: memory %d MB is out of range: give --mem from %d to %d (this host's memory)", s.Name, s.Mem, MinMem, hi)
	}
	if s.CPU == Unset {
		s.CPU = 1
	}
	if s.CPU < 1 || s.CPU > maxCPU {
		if maxCPU == 1 {
			return fmt.Errorf("vm %s: %s guests have one CPU; drop --cpu or use --type kvm", s.Name, strings.ToUpper(s.Type))
		}
		return fmt.Errorf("vm %s: %d CPUs: give --cpu from 1 to %d", s.Name, s.CPU, maxCPU)
	}
	if s.Eths == Unset {
		s.Eths = 1
	}
	if s.Eths < 0 || s.Eths > MaxEths {
		return fmt.Errorf("vm %s: %d eths: give --eth from 0 to %d", s.Name, s.Eths, MaxEths)
	}
	s.Dir = filepath.Join(s.Host.WorkDir, s.Name)
	// Unix socket paths are limited to 108 bytes; the longest we make is
	// a UML daemon transport's data socket, ethNN.ctl.dNNNNN.
	if len(s.Dir)+len("/eth31.ctl.d99999") >= 108 {
		return fmt.Errorf("vm %s: its sockets under %s would pass the 108-byte limit of unix socket paths; use a shorter name or work_dir", s.Name, s.Dir)
	}
	s.CD.Name, s.CD.Eths, s.CD.Mgmt = s.Name, s.Eths, s.Mgmt
	return nil
}

// resolveRootfs finds the image of a disk-backed kind (busybox unless
// given).
func resolveRootfs(s *Spec) error {
	if s.Rootfs == "" {
		s.Rootfs = "busybox"
	}
	img, err := ResolveImage(s.Host.BulkDir, s.Rootfs)
	if err != nil {
		return fmt.Errorf("vm %s: %v", s.Name, err)
	}
	s.Image = img
	return nil
}

// EthSockets names the switch sockets of s's eths: Dir/ethN+suffix.
func EthSockets(s *Spec, suffix string) []string {
	var socks []string
	for i := 0; i < s.Eths; i++ {
		socks = append(socks, filepath.Join(s.Dir, fmt.Sprintf("eth%d%s", i, suffix)))
	}
	return socks
}

// MgmtSocket names the switch socket of s's mgmt0 (Dir/mgmt0+suffix),
// used once the daemon gives s a management address (after Check).
func MgmtSocket(s *Spec, suffix string) string {
	return filepath.Join(s.Dir, "mgmt0"+suffix)
}

// kernelPath resolves --kernel: an absolute path or a file of bulk_dir.
func kernelPath(bulkDir, k string) (string, error) {
	p := k
	if !strings.Contains(k, "/") {
		if err := proto.CheckName("kernel", k); err != nil {
			return "", err
		}
		p = filepath.Join(bulkDir, k)
	} else if !filepath.IsAbs(k) {
		return "", fmt.Errorf("kernel %q: give a file name of bulk_dir or an absolute path", k)
	}
	if !fileExists(p) {
		return "", fmt.Errorf("kernel %s not found", p)
	}
	return p, nil
}

func hostMemMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			return min(kb/1024, MaxMem)
		}
	}
	return 65536
}

// Sweeper is a kind whose guests leave host state behind when they die
// with the switch (a runtime's records, mounts): Sweep removes what is
// left in h.WorkDir, for `start --discard`.
type Sweeper interface{ Sweep(h Host) }

// Sweep lets every kind that leaves state behind remove it.
func (r *Registry) Sweep(h Host) {
	for _, k := range r.kinds {
		if s, ok := k.(Sweeper); ok {
			s.Sweep(h)
		}
	}
}
