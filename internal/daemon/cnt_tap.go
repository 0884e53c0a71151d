package daemon

import (
	"fmt"
	"sync"

	"cloonix/internal/fabric"
	"cloonix/internal/hosttap"
	"cloonix/internal/machine"
	"cloonix/internal/machine/cnt"
	"cloonix/internal/tux"
)

// A container node's eth (machine/cnt): the switch makes a tap under the
// name the kind chose, keeps its descriptor as the port's one peer (a
// tux.TapConn, the switch's side of every tap it holds, with checksum and
// TSO offloads), and the kind moves the interface into the node. The
// node's MACs are held in the daemon's wire.MACSet, shared with the tux,
// while its tap is open.

// tapListener hands out its tap once, then waits for Close.
type tapListener struct {
	name    string
	conn    *tux.TapConn
	onClose func() // before the conn closes
	once    sync.Once
	closed  chan struct{}
}

// cntTaps are the daemon's open node taps by name, for their carrier
// (vmlife.go).
type cntTaps struct{ m sync.Map } // name -> *tux.TapConn

func (d *Daemon) listenTap(name string) (fabric.Listener, error) {
	f, err := hosttap.Open(name, hosttap.Offloads)
	if err != nil {
		return nil, err
	}
	c, err := tux.NewTapConn(f, tux.TapOptions{Name: name, MACs: &d.tuxSh.macs, Hold: true})
	if err != nil {
		return nil, err
	}
	d.cntTaps.m.Store(name, c)
	return newTapListener(name, c, func() { d.cntTaps.m.CompareAndDelete(name, c) }), nil
}

func newTapListener(name string, c *tux.TapConn, onClose func()) *tapListener {
	return &tapListener{name: name, conn: c, onClose: onClose, closed: make(chan struct{})}
}

// tapCarrier sets the carrier of the switch's tap name.
func (d *Daemon) tapCarrier(name string, up bool) error {
	c, ok := d.cntTaps.m.Load(name)
	if !ok {
		return machine.ErrNoCarrier
	}
	return cnt.SetTapCarrier(c.(*tux.TapConn).File(), up)
}

func (l *tapListener) Accept() (fabric.Conn, error) {
	var c fabric.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, fmt.Errorf("tap %s: closed", l.name)
}

func (l *tapListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
		l.onClose()
		l.conn.Close()
	}
	return nil
}

func (l *tapListener) Addr() string { return l.name }
