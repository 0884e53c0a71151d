package tux

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"cloonix/internal/fabric"
	"cloonix/internal/proto"
	"cloonix/internal/wire"
)

// Kind is one kind of tux, described once (one file each): the options
// add_tux takes, their checks, the helper's arguments, the helper itself
// and the switch side of its socket. Adding a kind is adding a file and
// a line to Kinds.
type Kind interface {
	// Name is add_tux's kind="...".
	Name() string
	// Usage presents the kind to users (`cloonix ctrl add tux KIND`);
	// its flags are the options add_tux takes.
	Usage() Usage
	// Plan checks a tux's options against the host and the switch's
	// other tux, and turns them into the helper's command line.
	Plan(s *Spec) (Plan, error)
	// SwitchConn makes the switch side of a started helper's socket: the
	// fabric.Conn the tux's port reads and writes. It is the kind's own,
	// so a kind may wrap the socket, or hand the port a transport of its
	// own (a tap fd, a UDP socket) and keep the helper for control only.
	SwitchConn(sock *net.UnixConn, h *Helper) (fabric.Conn, error)
	// setup runs in the helper process: it builds the kind from its
	// command line, doing every check and allocation that can fail so
	// that the switch gets one clear error. sw is the switch port (fd 3).
	setup(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error)
}

// Kinds is the registry, an explicit list (no init() tables).
var Kinds = []Kind{slirpKind{}, tapKind{}, t2tKind{}, vxlanKind{}}

// KindOf returns the kind named name, or an error listing the kinds.
func KindOf(name string) (Kind, error) {
	var names []string
	for _, k := range Kinds {
		if k.Name() == name {
			return k, nil
		}
		names = append(names, k.Name())
	}
	slices.Sort(names)
	return nil, fmt.Errorf("tux kind %q: use %s", name, strings.Join(names, ", "))
}

// Usage is how `cloonix ctrl add tux KIND` presents a kind.
type Usage struct {
	Args        string // after KIND NAME, e.g. "(--peer HOST:PORT | --listen ADDR:PORT)"
	Short, Long string
	Flags       []Flag // one per option of add_tux, in order
}

// Flag is one option of a kind, a --flag of the command line.
type Flag struct {
	Name, Usage string
	Bool        bool // a switch: given means "true"
}

// Keys are the options add_tux takes for k: proto.TuxKinds says them
// once for the switch, topology files and the command line (a kind's
// Usage flags follow that list; TestKindsMatchProto checks it).
func Keys(k Kind) []string {
	keys, _ := proto.TuxOptions(k.Name())
	return keys
}

// Option is one name=value shown by list.
type Option struct{ Name, Value string }

// Other is another tux of the same switch, for the checks that two tux
// must not clash (a tap's interface, a vxlan's UDP port).
type Other struct {
	Name, Kind string
	Options    []Option
}

// Spec is what add_tux asks for, with what the switch knows around it.
type Spec struct {
	Name, Kind string
	Options    map[string]string // add_tux's attributes but name and kind
	Dir        string            // work_dir/tux: helper logs and state
	Password   string            // the config's <password>, t2t's default
	Listeners  string            // work_dir/listeners: the lab's own host ports (slirp refuses them to guests)
	HostPorts  string            // <slirp_host_ports>: the allow-list of host ports, "" for all but the lab's
	Others     []Other           // the switch's other tux
	MACs       *wire.MACSet      // shared by the switch's offload conns
	// Plug gives each launch's switch side to the tux's port.
	Plug func(fabric.Conn)
}

// Plan is what a kind makes of a Spec.
type Plan struct {
	Args  []string // the helper's flags
	Env   []string // its extra environment (secrets stay off argv)
	Shown []Option // what list shows
	// Strict adds --strict to the first launch (a t2t dialer then
	// refuses a peer that answers wrongly; a relaunch keeps trying).
	Strict bool
	// Fresh files are removed before the first launch and after the
	// last (slirp's lease file).
	Fresh []string
}

// Check checks a spec without starting anything.
func Check(s *Spec) (Kind, Plan, error) {
	k, err := KindOf(s.Kind)
	if err != nil {
		return nil, Plan{}, err
	}
	keys := Keys(k)
	for x := range s.Options {
		if !slices.Contains(keys, x) {
			return nil, Plan{}, fmt.Errorf("tux kind %s takes no option %q (it takes: %s)", s.Kind, x, strings.Join(keys, ", "))
		}
	}
	p, err := k.Plan(s)
	return k, p, err
}

// streamConn is the plain switch side: the stream framing.
func streamConn(sock *net.UnixConn) fabric.Conn { return wire.NewStreamConn(sock) }

// offloadConn is the switch side of a helper that carries super frames
// (tap, t2t, vxlan): the other end cuts super frames for its own guests,
// so they may cross whole.
func offloadConn(sock *net.UnixConn, h *Helper) fabric.Conn {
	return wire.NewOffloadConn(sock, h.spec.MACs, segmenter{})
}

// guestMTU is the IP MTU of ordinary ports.
const guestMTU = 1500

// segmenter cuts super frames for the offload conn (gso.go).
type segmenter struct{}

func (segmenter) Segment(b, scratch []byte, emit func([]byte)) bool {
	mss := MSSFor(b, guestMTU)
	if mss <= 0 {
		return false
	}
	return SegmentTCP(b, mss, false, scratch, emit)
}
