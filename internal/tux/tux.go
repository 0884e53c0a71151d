// Package tux joins a cloonix switch to the outside (DESIGN sections 1
// and 8) through tux, each a helper process on a switch port. It holds
// both halves of the helper protocol:
//
//   - the switch's half (helper.go, spawn.go): Start/New check a Spec and
//     run its helper; a Helper relaunches its process when it dies (on a
//     fresh socketpair, re-sending forwards), answers Call, Stats and
//     Stop, and gives each launch's switch side to the port (Spec.Plug).
//   - the helper's half (this file): RunHelper, `cloonix tux-helper KIND
//     [flags]`, serves one kind until its switch is gone.
//
// Each kind is described once, by a Kind in its own file (kind.go has the
// interface and the explicit registry Kinds): slirp.go (a user-mode NAT
// network from gvisor-tap-vsock), tap.go (a host tap interface), t2t.go
// (a lan shared with another cloonix over TCP) and vxlan_kind.go (VXLAN
// over UDP; the helper is vxlan.go). A Kind gives add_tux's options and
// their checks, the helper's arguments, the helper itself and the switch
// side of its socket.
//
// A helper gets:
//
//   - fd 3: one end of a unix stream socketpair whose other end is the
//     tux's switch port; frames travel with the stream framing of package
//     wire (4-byte big-endian length, then the frame).
//   - fd 4 with --held (tap): the interface's descriptor, which the
//     switch keeps across relaunches.
//   - stdin/stdout: the control channel, one JSON object per line. The
//     helper's first line is {"ready":true,...} or {"error":"..."}; then
//     the switch sends Requests and the helper answers Replies with the
//     same id, and may send unsolicited {"event":...} lines.
//   - stderr: its log (the switch appends it to work_dir/tux/NAME.log).
//
// The helper ends when stdin closes (the switch is gone) and also gets
// SIGKILL from the kernel when the switch dies (Pdeathsig), so no helper
// outlives its switch.
package tux

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"cloonix/internal/wire"
)

// Request is one control request from the switch to a helper.
type Request struct {
	ID    int    `json:"id"`
	Op    string `json:"op"` // stats, forward_add, forward_del
	Proto string `json:"proto,omitempty"`
	Host  string `json:"host,omitempty"`
	Guest string `json:"guest,omitempty"`
}

// Reply is one line from a helper: the first (ready or error), an answer
// to a Request (same ID), or an event.
type Reply struct {
	ID    int               `json:"id,omitempty"`
	Ready bool              `json:"ready,omitempty"`
	Error string            `json:"error,omitempty"`
	Stats *Stats            `json:"stats,omitempty"`
	Info  map[string]string `json:"info,omitempty"`
	Event string            `json:"event,omitempty"`
}

// Stats are a helper's own counters, as for a port: Rx is what the
// helper sent into the switch (from the outside), Tx what it delivered
// from the switch to the outside, Drops frames lost on the way (e.g.
// while a t2t link is down).
type Stats struct {
	State    string `json:"state"`
	RxFrames uint64 `json:"rx_frames"`
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
	Drops    uint64 `json:"drops"`
}

// SwitchFD is the helper's end of its switch port.
const SwitchFD = 3

// ctl is the helper side of the control channel.
type ctl struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (c *ctl) send(r Reply) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.enc.Encode(r)
}

// Event sends an unsolicited event line ("up", "down", "refused: ...").
func (c *ctl) Event(e string) { c.send(Reply{Event: e}) }

// serving is a kind running in its helper process.
type serving interface {
	// handle answers one control request (other than stats).
	handle(r Request) error
	// stats returns the current counters.
	stats() Stats
	// serve moves frames between the switch and the outside until the
	// switch connection ends.
	serve(sw net.Conn) error
}

// preparer is a kind that must act first in its helper, before fd 3 is
// touched (tap drops its capabilities, which may re-execute).
type preparer interface{ prepare() error }

// RunHelper is `cloonix tux-helper KIND ARGS...`. It returns only on a
// setup error (already reported on stdout) or when its switch is gone.
func RunHelper(kindName string, args []string) error {
	c := &ctl{enc: json.NewEncoder(os.Stdout)}
	k, err := KindOf(kindName)
	if err != nil {
		c.send(Reply{Error: err.Error()})
		return err
	}
	if p, ok := k.(preparer); ok {
		if err := p.prepare(); err != nil {
			c.send(Reply{Error: err.Error()})
			return err
		}
	}
	f := os.NewFile(SwitchFD, "switch")
	sw, err := net.FileConn(f)
	f.Close()
	if err != nil {
		err = fmt.Errorf("tux-helper is started by the switch with its port on fd %d: %v", SwitchFD, err)
		c.send(Reply{Error: err.Error()})
		return err
	}
	run, info, err := k.setup(args, c, sw)
	if err != nil {
		c.send(Reply{Error: err.Error()})
		return err
	}
	if _, ok := run.(unprivileged); ok {
		if err := dropToNobody(); err != nil {
			c.send(Reply{Error: err.Error()})
			return err
		}
	}
	c.send(Reply{Ready: true, Info: info})
	done := make(chan error, 2)
	go func() { done <- serveControl(os.Stdin, c, run) }()
	go func() { done <- run.serve(sw) }()
	return <-done
}

// serveControl answers requests until stdin closes.
func serveControl(in io.Reader, c *ctl, k serving) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r Request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			c.send(Reply{Error: fmt.Sprintf("bad control line: %v", err)})
			continue
		}
		if r.Op == "stats" {
			s := k.stats()
			c.send(Reply{ID: r.ID, Stats: &s})
			continue
		}
		if err := k.handle(r); err != nil {
			c.send(Reply{ID: r.ID, Error: err.Error()})
			continue
		}
		c.send(Reply{ID: r.ID})
	}
	return io.EOF
}

// newSwitchReader reads the switch's frames (package wire's framing).
func newSwitchReader(c io.Reader) *wire.FrameReader {
	return wire.NewFrameReader(c, wire.FrameReaderSize, 14, wire.MaxStreamFrame)
}
