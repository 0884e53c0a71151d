package tux

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

// The t2t helper: the lans its port is on, shared with a t2t tux of
// another cloonix over one TCP connection (t2t_wire.go for the bytes).
// One side dials (--peer), the other listens (--listen); a cut connection
// is redialled with back-off (100 ms doubling to 5 s) and frames that
// arrive from the switch meanwhile are dropped and counted. Keepalives
// every second find a dead peer within T2TDeadAfter.

// t2tKind is add_tux kind="t2t" (peer="HOST:PORT" | listen="ADDR:PORT")
// [password="..."].
type t2tKind struct{}

func (t2tKind) Name() string { return "t2t" }
func (t2tKind) Usage() Usage {
	return Usage{Args: "(--peer HOST:PORT | --listen ADDR:PORT)",
		Short: "share the lans of this tux with a t2t tux of another cloonix, over TCP",
		Flags: []Flag{
			{Name: "peer", Usage: "dial the other cloonix's t2t tux at HOST:PORT"},
			{Name: "listen", Usage: "wait for the other cloonix on ADDR:PORT"},
			{Name: "password", Usage: "shared password (default: <password> of the config)"},
		}}
}

func (t2tKind) Plan(s *Spec) (Plan, error) {
	peer, listen := s.Options["peer"], s.Options["listen"]
	if (peer == "") == (listen == "") {
		return Plan{}, fmt.Errorf("t2t %s needs exactly one of peer=HOST:PORT (dial) or listen=ADDR:PORT", s.Name)
	}
	addr, flag := peer, "--peer"
	if listen != "" {
		addr, flag = listen, "--listen"
	}
	h, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 0 || n > 65535 || (peer != "" && (h == "" || n == 0)) {
		return Plan{}, fmt.Errorf("t2t %s: address %q: want HOST:PORT", s.Name, addr)
	}
	pw := s.Options["password"]
	if pw == "" && s.Password != "" {
		pw = T2TSecret(s.Password)
	}
	if pw == "" {
		return Plan{}, fmt.Errorf("t2t %s needs a password: give --password or set <password> in the config", s.Name)
	}
	return Plan{Args: []string{flag, addr}, Env: []string{T2TPasswordEnv + "=" + pw},
		Shown: []Option{{strings.TrimPrefix(flag, "--"), addr}}, Strict: true}, nil
}

// T2TSecret is a t2t link's default secret, derived from the control
// password but not it: two labs with the same <password> still meet, and
// a peer that knows the link's secret cannot log into TCP control with it.
func T2TSecret(controlPassword string) string {
	m := hmac.New(sha256.New, []byte(controlPassword))
	m.Write([]byte("cloonix t2t link secret v1"))
	return hex.EncodeToString(m.Sum(nil))
}

func (t2tKind) SwitchConn(sock *net.UnixConn, h *Helper) (fabric.Conn, error) {
	return offloadConn(sock, h), nil
}

func (t2tKind) setup(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	return setupT2T(args, c, sw)
}

// T2TPasswordEnv carries the password to the helper (never on its
// command line, where ps would show it).
const T2TPasswordEnv = "CLOONIX_T2T_PASSWORD"

// Timings of the link.
const (
	T2TKeepalive  = time.Second
	T2TDeadAfter  = 4 * time.Second
	t2tDialTime   = 3 * time.Second
	t2tShakeTime  = 5 * time.Second
	t2tBackoffMin = 100 * time.Millisecond
	t2tBackoffMax = 5 * time.Second
)

type t2tHelper struct {
	peer, listen string
	pw           []byte
	c            *ctl
	ln           net.Listener

	cur   atomic.Pointer[t2tSession]
	first *t2tSession // from a strict first dial, started by serve

	swMu sync.Mutex // one session at a time writes to the switch
	swW  *bufio.Writer
	sw   net.Conn

	rxF, rxB, txF, txB, drops atomic.Uint64
	state                     atomic.Value

	guard t2tGuard // listener side: bounds on strangers (t2t_guard.go)
}

type t2tSession struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex // guards w and last
	w    *bufio.Writer
	last time.Time // last write, for keepalives
	once sync.Once
	dead chan struct{}
}

func (s *t2tSession) close() {
	s.once.Do(func() {
		close(s.dead)
		s.conn.Close()
	})
}

func setupT2T(args []string, c *ctl, sw net.Conn) (serving, map[string]string, error) {
	fs := flag.NewFlagSet("t2t", flag.ContinueOnError)
	peer := fs.String("peer", "", "HOST:PORT to dial")
	listen := fs.String("listen", "", "ADDR:PORT to listen on")
	strict := fs.Bool("strict", false, "fail if the first peer answers but refuses or speaks garbage")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if (*peer == "") == (*listen == "") {
		return nil, nil, errors.New("t2t needs exactly one of --peer HOST:PORT or --listen ADDR:PORT")
	}
	pw := os.Getenv(T2TPasswordEnv)
	if pw == "" {
		return nil, nil, errors.New("t2t needs a password (" + T2TPasswordEnv + ")")
	}
	t := &t2tHelper{peer: *peer, listen: *listen, pw: []byte(pw), c: c, swW: bufio.NewWriterSize(sw, 256<<10), sw: sw}
	t.state.Store("connecting")
	info := map[string]string{}
	if t.listen != "" {
		ln, err := net.Listen("tcp", t.listen)
		if err != nil {
			return nil, nil, fmt.Errorf("t2t listen %s: %v (is the port taken? choose another ADDR:PORT)", t.listen, err)
		}
		t.ln = ln
		t.state.Store("listening")
		info["listen"] = ln.Addr().String()
		return t, info, nil
	}
	info["peer"] = t.peer
	if *strict {
		s, err := t.dial()
		switch {
		case err == nil:
			t.first = s
			t.cur.Store(s) // frames flow from the start
			t.state.Store("up")
		case isConnErr(err):
			// Nobody there yet: keep trying in the background.
		default:
			return nil, nil, fmt.Errorf("t2t peer %s: %w", t.peer, err)
		}
	}
	return t, info, nil
}

// isConnErr tells a failure to reach the peer (retry) from a refusal.
func isConnErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// unprivileged: a t2t helper needs no privilege once its listener is
// bound (privs.go).
func (t *t2tHelper) unprivileged() {}

func (t *t2tHelper) handle(r Request) error { return fmt.Errorf("a t2t tux has no %q", r.Op) }

func (t *t2tHelper) stats() Stats {
	return Stats{State: t.state.Load().(string), RxFrames: t.rxF.Load(), RxBytes: t.rxB.Load(), TxFrames: t.txF.Load(), TxBytes: t.txB.Load(), Drops: t.drops.Load()}
}

// dial connects and runs the dialer's half of the handshake.
func (t *t2tHelper) dial() (*t2tSession, error) {
	conn, err := net.DialTimeout("tcp", t.peer, t2tDialTime)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(t2tShakeTime))
	r := bufio.NewReaderSize(conn, 256<<10)
	hello := make([]byte, helloLen)
	if _, err := io.ReadFull(r, hello); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w (no t2t hello: %v)", ErrT2TGarbage, err)
	}
	_, nonceL, err := parseHello(hello)
	if err != nil {
		conn.Close()
		return nil, err
	}
	nonceD := newNonce()
	if _, err := conn.Write(encodeAuth(t.pw, nonceL, nonceD)); err != nil {
		conn.Close()
		return nil, err
	}
	res := make([]byte, resultLen)
	if _, err := io.ReadFull(r, res); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w (no answer to the authentication: %v)", ErrT2TGarbage, err)
	}
	if err := parseResult(res, t.pw, nonceD, nonceL); err != nil {
		conn.Close()
		return nil, err
	}
	return t.newSession(conn, r), nil
}

// accept runs the listener's half of the handshake.
func (t *t2tHelper) accept(conn net.Conn) (*t2tSession, error) {
	_ = conn.SetDeadline(time.Now().Add(t2tShakeTime))
	nonceL := newNonce()
	if _, err := conn.Write(encodeHello(nonceL)); err != nil {
		return nil, err
	}
	// Read exactly the answer, straight from the socket: the session's
	// buffers exist only once the peer proved it knows the secret.
	auth := make([]byte, authLen)
	if _, err := io.ReadFull(conn, auth); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrT2TGarbage, err)
	}
	nonceD, err := parseAuth(auth, t.pw, nonceL)
	switch {
	case errors.Is(err, ErrT2TPassword):
		_, _ = conn.Write(encodeResult(t2tStatusPassword, nil, nil, nil))
		return nil, err
	case errors.Is(err, ErrT2TVersion):
		_, _ = conn.Write(encodeResult(t2tStatusVersion, nil, nil, nil))
		return nil, err
	case err != nil:
		return nil, err
	}
	if _, err := conn.Write(encodeResult(t2tStatusOK, t.pw, nonceD, nonceL)); err != nil {
		return nil, err
	}
	return t.newSession(conn, bufio.NewReaderSize(conn, 256<<10)), nil
}

func (t *t2tHelper) newSession(conn net.Conn, r *bufio.Reader) *t2tSession {
	_ = conn.SetDeadline(time.Time{})
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	return &t2tSession{conn: conn, r: r, w: bufio.NewWriterSize(conn, 256<<10), dead: make(chan struct{}), last: time.Now()}
}

func (t *t2tHelper) serve(sw net.Conn) error {
	if t.ln != nil {
		go t.acceptLoop()
	} else {
		go t.dialLoop()
	}
	return t.fromSwitch(sw)
}

// run makes s the live session until it ends.
func (t *t2tHelper) run(s *t2tSession) {
	if old := t.cur.Swap(s); old != nil && old != s {
		old.close()
	}
	t.state.Store("up")
	t.c.Event("up " + s.conn.RemoteAddr().String())
	go t.keepalive(s)
	err := t.toSwitch(s)
	s.close()
	if t.cur.CompareAndSwap(s, nil) {
		t.state.Store("down")
		t.c.Event(fmt.Sprintf("down %v", err))
		log.Printf("t2t: link to %s down: %v", s.conn.RemoteAddr(), err)
	}
}

func (t *t2tHelper) dialLoop() {
	if t.first != nil {
		t.run(t.first)
	}
	backoff := t2tBackoffMin
	for {
		s, err := t.dial()
		if err != nil {
			t.state.Store("connecting")
			log.Printf("t2t: peer %s: %v; retrying in %v", t.peer, err, backoff)
			time.Sleep(backoff)
			backoff = min(backoff*2, t2tBackoffMax)
			continue
		}
		backoff = t2tBackoffMin
		t.run(s)
	}
}

func (t *t2tHelper) acceptLoop() {
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		host := remoteHost(conn)
		if err := t.guard.admit(host); err != nil {
			conn.Close()
			t.refused(conn, err)
			continue
		}
		go func() {
			s, err := t.accept(conn)
			t.guard.done(host, err == nil)
			if err != nil {
				conn.Close()
				t.refused(conn, err)
				return
			}
			t.run(s)
		}()
	}
}

// keepalive sends a keepalive when nothing else went out for a second.
func (t *t2tHelper) keepalive(s *t2tSession) {
	tk := time.NewTicker(T2TKeepalive / 2)
	defer tk.Stop()
	var hdr [recHdrLen]byte
	putRecordHdr(hdr[:], recKeepalive, 0)
	for {
		select {
		case <-s.dead:
			return
		case <-tk.C:
		}
		s.mu.Lock()
		if time.Since(s.last) >= T2TKeepalive {
			_, err := s.w.Write(hdr[:])
			if err == nil {
				err = s.w.Flush()
			}
			s.last = time.Now()
			if err != nil {
				s.mu.Unlock()
				s.close()
				return
			}
		}
		s.mu.Unlock()
	}
}

// fromSwitch sends the switch's frames to the live session (dropping
// and counting them while there is none), flushing when the switch has
// nothing more buffered; large frames go out from where they were read.
func (t *t2tHelper) fromSwitch(sw net.Conn) error {
	fr := newSwitchReader(sw)
	var hdr [recHdrLen]byte
	for {
		b, err := fr.Next()
		if err != nil {
			return err
		}
		n := len(b)
		s := t.cur.Load()
		if s == nil {
			t.drops.Add(1)
			continue
		}
		putRecordHdr(hdr[:], recFrame, n)
		s.mu.Lock()
		if n > bigWrite {
			err = s.w.Flush()
			if err == nil {
				bufs := net.Buffers{hdr[:], b}
				_, err = bufs.WriteTo(s.conn)
			}
		} else {
			_, err = s.w.Write(hdr[:])
			if err == nil {
				_, err = s.w.Write(b)
			}
			if err == nil && fr.Buffered() < 4 {
				err = s.w.Flush()
			}
		}
		s.last = time.Now()
		s.mu.Unlock()
		if err != nil {
			t.drops.Add(1)
			s.close()
			continue
		}
		t.txF.Add(1)
		t.txB.Add(uint64(n))
	}
}

// toSwitch gives the peer's frames to the switch until the session ends.
func (t *t2tHelper) toSwitch(s *t2tSession) error {
	fr := newSwitchReader(s.r)
	var lb [wire.HeaderLen]byte
	deadline := time.Time{}
	for {
		if now := time.Now(); now.Add(T2TDeadAfter - time.Second).After(deadline) {
			deadline = now.Add(T2TDeadAfter)
			_ = s.conn.SetReadDeadline(deadline)
		}
		typ, p, err := nextRecord(fr)
		if err != nil {
			return err
		}
		switch typ {
		case recClose:
			return fmt.Errorf("the peer closed the link: %q", p)
		case recKeepalive:
			continue
		}
		wire.PutHeader(lb[:], len(p))
		t.swMu.Lock()
		if len(p) > bigWrite {
			err = t.swW.Flush()
			if err == nil {
				bufs := net.Buffers{lb[:], p}
				_, err = bufs.WriteTo(t.sw)
			}
		} else {
			_, err = t.swW.Write(lb[:])
			if err == nil {
				_, err = t.swW.Write(p)
			}
			if err == nil && fr.Buffered() < recHdrLen {
				err = t.swW.Flush()
			}
		}
		t.swMu.Unlock()
		if err != nil {
			return err
		}
		t.rxF.Add(1)
		t.rxB.Add(uint64(len(p)))
	}
}
