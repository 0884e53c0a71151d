package tux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

// vxConn is the switch's side of a vxlan tux: the port sends and
// receives the VXLAN datagrams itself, in batches (recvmmsg/sendmmsg,
// raw calls: rawio.go, UDP GSO and GRO where
// the kernel has them, TCP segments merged back into super frames):
// no process hop per frame. The UDP socket and the learnt MACs (the
// engine, a vxlanHelper) belong to the tux and outlive the helper's
// relaunches (Helper.keepEngine); each launch gets a new vxConn on it.
type vxConn struct {
	e       *vxlanHelper
	sock    net.Conn // the helper's socket: closed with the conn
	rx      *vxRx
	pending []*fabric.Frame
	next    int
	put     func([]byte) error
	flushMg func() error
	mg      *tcpMerger
	mframe  *fabric.Frame // the merger builds in this frame's buffer
	tx      *vxTx
	closed  atomic.Bool
}

// errReplaced ends the reader of a conn whose tux was given a new one.
var errReplaced = errors.New("vxlan: replaced by a newer launch")

// newVXConn: macs is the switch's set of MACs behind taps and offload
// conns; the conn adds the sources it receives from (so a tap hands it
// super frames, cut here with their payload in place) and merges only
// toward its members.
func newVXConn(e *vxlanHelper, sock net.Conn, macs *wire.MACSet) *vxConn {
	c := &vxConn{e: e, sock: sock, rx: newVXRx(e.gro, macs), tx: e.newTx()}
	c.put = c.queue
	if e.gsoOK {
		// The merger builds its super frames straight in a frame for
		// the port (queue takes the frame instead of a copy).
		c.mg = newTCPMerger(c.queue)
		c.mg.takes = macs.TakesSuper
		c.mframe = fabric.NewFrame(fabric.MaxFrame)
		c.mg.buf = c.mframe.Buf()[:vxMergeMax]
		c.put, c.flushMg = c.mg.add, c.mg.flush
	}
	e.owner.Store(c)
	return c
}

// queue copies f (valid only during the call) into a frame for the port;
// a frame the merger built in c.mframe is taken as it is.
func (c *vxConn) queue(f []byte) error {
	if c.mframe != nil && len(f) > StdFrame && &f[0] == &c.mframe.Buf()[0] {
		c.mframe.N = len(f)
		c.pending = append(c.pending, c.mframe)
		c.mframe = fabric.NewFrame(fabric.MaxFrame)
		c.mg.buf = c.mframe.Buf()[:vxMergeMax]
		return nil
	}
	nf := fabric.NewFrame(len(f))
	copy(nf.Bytes(), f)
	c.pending = append(c.pending, nf)
	return nil
}

// Buffered: frames of the last batch not handed over yet.
func (c *vxConn) Buffered() int { return len(c.pending) - c.next }

// ReadFrame returns the next frame of the last batch received, or waits
// for the next batch.
func (c *vxConn) ReadFrame() (*fabric.Frame, error) {
	for c.next == len(c.pending) {
		clear(c.pending)
		c.pending, c.next = c.pending[:0], 0
		// A conn replaced (the helper relaunched) stops reading: the
		// new one reads the socket.
		if c.closed.Load() || c.e.owner.Load() != c {
			return nil, errReplaced
		}
		n, err := c.rx.recv(c.e.rc)
		if err != nil {
			return nil, fmt.Errorf("vxlan socket: %v", err)
		}
		if err := c.e.receive(c.rx, n, c.put); err != nil {
			return nil, err
		}
		if c.flushMg != nil {
			if err := c.flushMg(); err != nil {
				return nil, err
			}
		}
	}
	f := c.pending[c.next]
	c.pending[c.next] = nil
	c.next++
	return f, nil
}

// WriteFrame adds b to the batch (sent from where it is, by Flush).
func (c *vxConn) WriteFrame(b []byte) error {
	if len(b) < minInnerFrame {
		return nil
	}
	c.tx.take(b)
	return nil
}

// Flush sends the batch: one sendmmsg, GSO runs where possible.
func (c *vxConn) Flush() error {
	if len(c.tx.frames) > 0 {
		c.tx.flush()
	}
	return nil
}

// WriteNow sends frames from the caller (the sending port's reader):
// no hand-over to the port's writer goroutine. The batch goes out before
// it returns (a UDP socket takes datagrams or drops them; it does not
// hold a sender for long), so nothing is kept.
func (c *vxConn) WriteNow(frames []*fabric.Frame) (bool, error) {
	for _, f := range frames {
		if b := f.Bytes(); len(b) >= minInnerFrame {
			c.tx.take(b)
		}
	}
	return false, c.Flush()
}

// Close ends this conn (the helper's socket too); the engine stays for
// the next launch.
func (c *vxConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	// c.mframe stays with the reader (which may still run): the
	// collector takes it with the conn.
	return c.sock.Close()
}

// engineCloser closes the engine's socket (and stops its MAC sweep)
// when the tux goes.
type engineCloser struct {
	e    *vxlanHelper
	stop chan struct{}
}

func (x engineCloser) Close() error {
	close(x.stop)
	return x.e.conn.Close()
}

var _ io.Closer = engineCloser{}
