package guest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxOutput bounds what one Exec collects per stream, so a runaway
// command cannot exhaust the switch's memory.
const MaxOutput = 64 << 20

// pingInterval is how often Ping asks again: the first pings may be lost
// while the guest boots (nobody reads the line yet, or the tty echoes).
const pingInterval = 200 * time.Millisecond

// maxPiledPings bounds the pings Ping sends while the last is unread
// (16 bytes each).
const maxPiledPings = 63

// ErrClosed is returned by calls on a closed client or a dead line.
var ErrClosed = errors.New("guest agent line closed")

// Client is the host end of a guest agent line (a serial line of the VM).
// Its methods may be called concurrently.
type Client struct {
	rw     io.ReadWriteCloser
	wmu    sync.Mutex
	nextID atomic.Uint32

	mu    sync.Mutex
	calls map[uint32]*call
	err   error // set once the reader stopped
	done  chan struct{}

	// Host-to-guest flow control (HostWindow).
	fmu      sync.Mutex
	fcond    *sync.Cond
	inflight int

	// What the line did, for a guest that never answers (Diag).
	pings, frames, pongs atomic.Uint64
	skipped              atomic.Int64
	lastStatus           atomic.Value // string: the last pong's status text
}

type call struct {
	ch             chan Frame // pongs and exits
	stdout, stderr []byte
	overflow       bool
}

// NewClient starts reading frames from rw.
func NewClient(rw io.ReadWriteCloser) *Client {
	c := &Client{rw: rw, calls: map[uint32]*call{}, done: make(chan struct{})}
	c.fcond = sync.NewCond(&c.fmu)
	go c.readLoop()
	return c
}

func (c *Client) readLoop() {
	dec := NewDecoder(c.rw)
	var err error
	for {
		var f Frame
		f, err = dec.Next()
		c.skipped.Store(int64(dec.Skipped))
		if err != nil {
			break
		}
		c.frames.Add(1)
		if f.Type == TPong {
			c.pongs.Add(1)
			if len(f.Payload) > 1 {
				c.lastStatus.Store(string(f.Payload[1:]))
			}
		}
		if f.Type == TAck {
			if len(f.Payload) == 4 {
				c.fmu.Lock()
				c.inflight = max(0, c.inflight-int(binary.BigEndian.Uint32(f.Payload)))
				c.fcond.Broadcast()
				c.fmu.Unlock()
			}
			continue
		}
		c.mu.Lock()
		cl := c.calls[f.ID]
		if cl != nil {
			switch f.Type {
			case TStdout:
				cl.stdout, cl.overflow = appendCapped(cl.stdout, f.Payload, cl.overflow)
			case TStderr:
				cl.stderr, cl.overflow = appendCapped(cl.stderr, f.Payload, cl.overflow)
			case TPong, TExit:
				select {
				case cl.ch <- f:
				default: // a stale pong for a call that already has one
				}
			}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed) {
		c.err = ErrClosed
	} else {
		c.err = fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.mu.Unlock()
	close(c.done)
	c.fmu.Lock()
	c.fcond.Broadcast()
	c.fmu.Unlock()
}

func appendCapped(b, p []byte, over bool) ([]byte, bool) {
	if len(b)+len(p) > MaxOutput {
		return b, true
	}
	return append(b, p...), over
}

func (c *Client) register() (uint32, *call) {
	id := c.nextID.Add(1)
	cl := &call{ch: make(chan Frame, 4)}
	c.mu.Lock()
	c.calls[id] = cl
	c.mu.Unlock()
	return id, cl
}

func (c *Client) unregister(id uint32) {
	c.mu.Lock()
	delete(c.calls, id)
	c.mu.Unlock()
}

// credit waits until n more bytes fit in the window. If nothing was
// acknowledged for a while the frames were lost (a reboot, line noise):
// start afresh rather than stall forever.
func (c *Client) credit(n int) error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for c.inflight > 0 && c.inflight+n > HostWindow {
		select {
		case <-c.done:
			return c.deadErr()
		default:
		}
		if time.Now().After(deadline) {
			c.inflight = 0
			break
		}
		t := time.AfterFunc(100*time.Millisecond, func() {
			c.fmu.Lock()
			c.fcond.Broadcast()
			c.fmu.Unlock()
		})
		c.fcond.Wait()
		t.Stop()
	}
	c.inflight += n
	return nil
}

func (c *Client) send(typ byte, id uint32, payload []byte) error {
	b := AppendFrame(nil, typ, id, payload)
	if typ != TPing {
		if err := c.credit(len(b)); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.deadErr()
	default:
	}
	if _, err := c.rw.Write(b); err != nil {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

func (c *Client) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// unread is how many bytes we wrote that the other end (QEMU, UML) has
// not read yet, or -1 when the line does not tell (not a socket).
func (c *Client) unread() int {
	sc, ok := c.rw.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}

// Ping returns nil once the agent answers that it has applied the config
// CD (and run /etc/rc.d), asking again every 200 ms until ctx ends.
//
// While the guest boots nobody reads the line and pings pile up in the
// socket; UML then pushes them all into the guest tty at once when the
// agent opens it, and a tty that overflows kills a UML line for good. So
// a new ping goes out only once the previous one was read by the
// emulator (when the line is a socket, which says so); otherwise the
// interval grows to a second.
func (c *Client) Ping(ctx context.Context) error {
	id, cl := c.register()
	defer c.unregister(id)
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	last := "no answer"
	piled := 0
	for tick := 0; ; tick++ {
		n := c.unread()
		if n == 0 {
			piled = 0
		}
		if n == 0 || (n < 0 && (tick < 10 || tick%5 == 0)) || (n > 0 && piled < maxPiledPings && tick%5 == 4) {
			// A ping a second even while the last is unread: a line
			// that reads on an edge (new data) and missed the first
			// one reads again; at most maxPiledPings pile up (1 KiB),
			// far below what overflows a guest tty.
			if err := c.send(TPing, id, nil); err != nil {
				return err
			}
			c.pings.Add(1)
			if n > 0 {
				piled++
			}
		}
		select {
		case f := <-cl.ch:
			if len(f.Payload) > 0 && f.Payload[0] == 1 {
				return nil
			}
			if len(f.Payload) > 1 {
				last = string(f.Payload[1:])
			} else {
				last = "not ready"
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return fmt.Errorf("guest agent: %s: %w", last, ctx.Err())
			case <-c.done:
				return c.deadErr()
			}
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("guest agent: %s: %w", last, ctx.Err())
		case <-c.done:
			return c.deadErr()
		}
	}
}

// Exec runs argv in the guest with stdin and returns its outputs and exit
// code (128+N when killed by signal N; 127 when argv[0] is not found).
// err is set only when the command could not be run or collected; if ctx
// ends first the process is killed.
func (c *Client) Exec(ctx context.Context, argv []string, stdin []byte) (stdout, stderr []byte, code int, err error) {
	req, err := encodeExec(argv)
	if err != nil {
		return nil, nil, -1, err
	}
	id, cl := c.register()
	defer c.unregister(id)
	for len(req) > 0 {
		n := min(len(req), HostChunk)
		if err := c.send(TExec, id, req[:n]); err != nil {
			return nil, nil, -1, err
		}
		req = req[n:]
	}
	// Stdin follows in frames; an empty frame closes it.
	for len(stdin) > 0 {
		n := min(len(stdin), HostChunk)
		if err := c.send(TStdin, id, stdin[:n]); err != nil {
			return nil, nil, -1, err
		}
		stdin = stdin[n:]
	}
	if err := c.send(TStdin, id, nil); err != nil {
		return nil, nil, -1, err
	}
	for {
		select {
		case f := <-cl.ch:
			if f.Type != TExit {
				continue
			}
			code, msg, err := decodeExit(f.Payload)
			c.mu.Lock()
			stdout, stderr, over := cl.stdout, cl.stderr, cl.overflow
			c.mu.Unlock()
			if err != nil {
				return stdout, stderr, -1, err
			}
			if msg != "" {
				return stdout, stderr, code, fmt.Errorf("guest agent: %s", msg)
			}
			if over {
				return stdout, stderr, code, fmt.Errorf("guest agent: output larger than %d bytes was cut", MaxOutput)
			}
			return stdout, stderr, code, nil
		case <-ctx.Done():
			_ = c.send(TKill, id, nil)
			return nil, nil, -1, fmt.Errorf("guest exec %q: %w", argv[0], ctx.Err())
		case <-c.done:
			return nil, nil, -1, c.deadErr()
		}
	}
}

// Close closes the line; pending calls fail with ErrClosed.
func (c *Client) Close() error {
	err := c.rw.Close()
	// Some line types do not wake a blocked Read on Close; do not hang.
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	return err
}

// Diag says what the line did, for a guest that never answered: pings
// sent and still unread by the emulator, frames received, noise skipped,
// the agent's last status.
func (c *Client) Diag() string {
	st, _ := c.lastStatus.Load().(string)
	if st == "" {
		st = "none"
	}
	alive := "open"
	select {
	case <-c.done:
		alive = c.deadErr().Error()
	default:
	}
	unread := "unknown"
	if n := c.unread(); n >= 0 {
		unread = strconv.FormatBool(n > 0)
	}
	return fmt.Sprintf("agent line %s: %d pings sent, some unread by the guest's emulator: %s; %d frames received (%d pongs, last status %q), %d bytes of noise skipped",
		alive, c.pings.Load(), unread, c.frames.Load(), c.pongs.Load(), st, c.skipped.Load())
}
