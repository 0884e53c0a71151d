// Package daemon is the cloonix switch: the state of one lab, the XML
// command handlers, events, the control listeners and the supervision of
// machines and helpers. Each feature file (lans.go, ports.go, ...) returns
// a Feature with its verbs; New builds the switch from the list in
// registry.go, NewWith from any list.
package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloonix/internal/config"
	"cloonix/internal/fabric"
	"cloonix/internal/machine"
	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// handler serves one verb. It returns the reply's inner XML or an error
// sentence; it must leave the lab unchanged when it fails.
type handler func(d *Daemon, c *client, m *proto.Msg) ([]byte, error)

// Daemon is one running switch.
type Daemon struct {
	Cfg *config.Config
	Fab *fabric.Fabric

	mu    sync.Mutex // guards the lab state below and in feature files
	ports map[string]*rawPort

	subMu sync.Mutex
	subs  map[*client]struct{}
	conns map[net.Conn]struct{} // every control connection, closed at shutdown

	// Feature state, each part used only by the file named.
	vmTab      vmTable             // vms.go
	tuxMu      sync.Mutex          // tux.go: guards tuxs
	tuxs       map[string]*tuxProc // tux.go
	tuxSh      tuxShared           // tux.go
	cntTaps    cntTaps             // cnt_tap.go
	vdeOnce    sync.Once           // vde.go
	vdeSt      *vdeState           // vde.go
	posMu      sync.Mutex          // graph_pos.go: guards pos
	pos        map[posKey]position // graph_pos.go
	capMu      sync.Mutex          // capture.go: guards capCount
	capCount   int                 // capture.go
	jr         *journal            // journal.go
	resume     bool                // journal.go: start --resume
	discard    bool                // journal.go: start --discard
	resumeTopo *topology.Topology  // journal.go: the lab to resume
	reaperArgv []string            // journal.go: the reaper command
	mgmt       mgmtState           // mgmt.go

	// Installed features (registry.go).
	verbs       map[string]handler
	listenKinds map[string]func(d *Daemon, path string) (fabric.Listener, error)
	listers     []func(d *Daemon, lab *proto.Lab)
	startHooks  []func(d *Daemon)

	listeners []net.Listener
	quit      chan struct{}
	quitOnce  sync.Once
	stopHooks []func() // run on shutdown, last registered first
	wg        sync.WaitGroup
}

// New prepares the full switch for cfg; Run starts it.
func New(cfg *config.Config) *Daemon { return NewWith(cfg, Features()...) }

// NewWith prepares a switch with only the features given.
func NewWith(cfg *config.Config, feats ...Feature) *Daemon {
	d := &Daemon{Cfg: cfg, Fab: fabric.New(), ports: map[string]*rawPort{}, subs: map[*client]struct{}{}, conns: map[net.Conn]struct{}{}, quit: make(chan struct{}),
		vmTab: vmTable{vms: map[string]*vmEntry{}, boots: newBootSlots(machine.BootSlots(), machine.BootSlotHold)}, tuxs: map[string]*tuxProc{}, pos: map[posKey]position{},
		verbs: map[string]handler{}, listenKinds: map[string]func(*Daemon, string) (fabric.Listener, error){}}
	d.install(feats)
	d.Fab.OnConn = func(port string, up bool) {
		t := "port_down"
		if up {
			t = "port_up"
		}
		d.Emit(t, "name", port)
	}
	// Lan and membership events come from the fabric's hooks, so every
	// change reports itself whoever made it.
	d.Fab.OnLan = func(lan string, up bool) {
		if up {
			d.Emit("lan_added", "name", lan)
		} else {
			d.Emit("lan_deleted", "name", lan)
		}
		d.vdeLanChanged(lan, up) // vde.go
	}
	d.Fab.OnMember = func(port, lan string, on bool) {
		if on {
			d.Emit("attached", "port", port, "lan", lan)
		} else {
			d.Emit("detached", "port", port, "lan", lan)
		}
	}
	return d
}

// Run listens on the control sockets and serves until Stop.
func (d *Daemon) Run() error {
	// Whatever the caller's umask, nothing the switch or its children
	// create (sockets, disks, logs) is open to group or others.
	syscall.Umask(0o077)
	if w := d.Cfg.TCPWarning(); w != "" {
		log.Printf("warning: %s", w)
	}
	if err := config.PrepareWorkDir(d.Cfg.WorkDir); err != nil {
		return err
	}
	sock := d.Cfg.ServerName
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("a switch already answers on %s; stop it first (`cloonix stop`) or use another config", sock)
	}
	lock, err := d.Cfg.LockWorkDir()
	if err != nil {
		return err
	}
	d.OnStop(func() { lock.Close() })
	if err := d.checkJournal(); err != nil { // journal.go
		lock.Close()
		return err
	}
	if err := d.listen(sock); err != nil {
		lock.Close()
		return err
	}
	for _, l := range d.listeners {
		d.wg.Add(1)
		go d.accept(l)
	}
	log.Printf("cloonix switch %q: control on unix:%s tcp:%s, work_dir %s", d.Cfg.NetworkName, sock, d.Cfg.TCPAddr(), d.Cfg.WorkDir)
	if d.reaperArgv != nil {
		if err := machine.StartReaper(d.reaperArgv); err != nil {
			log.Printf("%v: guests may outlive a switch that dies", err)
		} else {
			d.OnStop(machine.StopReaper) // runs after the guests are gone
		}
	}
	d.startJournal()
	d.OnStop(d.stopJournal) // runs after the guests are gone
	for _, f := range d.startHooks {
		f(d)
	}
	if d.resumeTopo != nil {
		d.resumeLab()
	}
	<-d.quit
	d.shutdown()
	return nil
}

// listen opens the control sockets and writes the pid file.
func (d *Daemon) listen(sock string) error {
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	if fi, err := os.Lstat(sock); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("control socket %s: a file that is not a socket is in the way; remove it or change <server_name>", sock)
		}
		_ = os.Remove(sock) // stale: nobody answered on it
	}
	ul, err := listenPrivate(sock)
	if err != nil {
		return fmt.Errorf("control socket %s: %v", sock, err)
	}
	d.listeners = append(d.listeners, ul)
	closeAll := func() {
		for _, l := range d.listeners {
			l.Close()
		}
	}
	if addr := d.Cfg.TCPAddr(); addr != "" {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("control TCP %s: %v (another switch on this port? set <server_port> in the config)", addr, err)
		}
		d.listeners = append(d.listeners, tl)
		// The slirp gateway refuses guests the way to this port.
		d.OnStop(proto.RegisterListener(d.Cfg.ListenersDir(), "switch", tl.Addr().(*net.TCPAddr).Port))
	}
	if err := d.startMgmt(); err != nil {
		closeAll()
		return err
	}
	if err := config.WriteFileNoFollow(d.Cfg.PidFile(), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600); err != nil {
		closeAll()
		return err
	}
	return nil
}

// Stop asks Run to shut down.
func (d *Daemon) Stop() { d.quitOnce.Do(func() { close(d.quit) }) }

// Done is closed once Stop was called.
func (d *Daemon) Done() <-chan struct{} { return d.quit }

// OnStop registers cleanup to run at shutdown (last first).
func (d *Daemon) OnStop(f func()) {
	d.mu.Lock()
	d.stopHooks = append(d.stopHooks, f)
	d.mu.Unlock()
}

// listenPrivate listens on a unix socket that only the owner may use: the
// umask makes it 0600 from birth, so no client can slip in before a chmod.
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (d *Daemon) shutdown() {
	for _, l := range d.listeners {
		l.Close()
	}
	d.wg.Wait() // no new connections from here on
	d.mu.Lock()
	hooks := d.stopHooks
	d.mu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		hooks[i]()
	}
	d.Fab.Close()
	d.subMu.Lock()
	for c := range d.subs {
		c.close()
	}
	for c := range d.conns {
		c.Close()
	}
	d.subMu.Unlock()
	_ = os.Remove(d.Cfg.ServerName)
	_ = os.Remove(d.Cfg.PidFile())
	_ = os.RemoveAll(d.Cfg.PortsDir())
	_ = os.RemoveAll(d.Cfg.VDEDir())
	log.Printf("cloonix switch stopped")
}

// maxClients bounds concurrent control connections; maxPending those
// not authenticated yet (TCP), so unauthenticated clients cannot grow the
// switch: each holds a 1 KiB read cap and no queue (issue 15, finding 5).
const (
	maxClients = 4096
	maxPending = 64
	preAuthMax = 1024
)

func (d *Daemon) accept(l net.Listener) {
	defer d.wg.Done()
	_, isTCP := l.(*net.TCPListener)
	sem := make(chan struct{}, maxClients)
	pending := make(chan struct{}, maxPending)
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (EMFILE, ECONNABORTED): back off, keep serving.
			log.Printf("control accept: %v", err)
			select {
			case <-d.quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !tryAcquire(sem) {
			refuse(conn, "too many control connections")
			continue
		}
		var done func()
		if isTCP {
			if !tryAcquire(pending) {
				<-sem
				refuse(conn, "too many connections waiting to authenticate; try again")
				continue
			}
			var once sync.Once
			done = func() { once.Do(func() { <-pending }) }
		}
		d.subMu.Lock()
		d.conns[conn] = struct{}{}
		d.subMu.Unlock()
		go func() {
			defer func() {
				if done != nil {
					done()
				}
				d.subMu.Lock()
				delete(d.conns, conn)
				d.subMu.Unlock()
				<-sem
			}()
			d.serve(conn, done)
		}()
	}
}

func tryAcquire(sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
		return false
	}
}

// refuse says why, briefly, and closes; the connection was never recorded.
func refuse(conn net.Conn, why string) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = proto.NewReply("0", errors.New(why), nil).Encode(conn)
	conn.Close()
}

// capReader fails a read beyond max bytes until lifted: before
// authentication a client may send one short answer, not megabytes.
type capReader struct {
	r      io.Reader
	n, max int
	lifted bool
}

var errPreAuthSize = fmt.Errorf("more than %d bytes before authentication", preAuthMax)

func (c *capReader) Read(p []byte) (int, error) {
	if c.lifted {
		return c.r.Read(p)
	}
	if c.n >= c.max {
		return 0, errPreAuthSize
	}
	if len(p) > c.max-c.n {
		p = p[:c.max-c.n]
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// client is one control connection. Its replies and events go through a
// bounded queue drained by a writer goroutine, so a client that never
// reads is dropped without slowing anyone else.
type client struct {
	conn net.Conn
	out  chan []byte
	done chan struct{}
	once sync.Once

	// takeover, when a handler sets it, gets the connection once the
	// reply is flushed; the connection then carries a stream (capture.go).
	takeover func(net.Conn)
	handed   chan struct{}
}

const clientQueue = 4096

func (c *client) close() {
	c.once.Do(func() {
		close(c.done)
		c.conn.Close()
	})
}

// send queues a message; a full queue drops the client.
func (c *client) send(m *proto.Msg) {
	select {
	case c.out <- m.Bytes():
	case <-c.done:
	default:
		log.Printf("control client %s does not read its messages; dropped", c.conn.RemoteAddr())
		c.close()
	}
}

func (c *client) writer() {
	w := bufio.NewWriter(c.conn)
	for {
		select {
		case b := <-c.out:
			if b == nil { // hand the connection over (takeover)
				if w.Flush() != nil {
					c.close()
				}
				close(c.handed)
				return
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := w.Write(b); err != nil {
				c.close()
				return
			}
			if len(c.out) == 0 {
				if err := w.Flush(); err != nil {
					c.close()
					return
				}
			}
		case <-c.done:
			return
		}
	}
}

// serve runs one connection. authDone, set for TCP, is called once the
// client authenticated (or failed): it frees its pre-auth slot.
func (d *Daemon) serve(conn net.Conn, authDone func()) {
	cr := &capReader{r: conn, max: preAuthMax, lifted: authDone == nil}
	dec := proto.NewDecoder(bufio.NewReader(cr))
	if authDone != nil {
		ok := d.authenticate(conn, dec)
		authDone()
		if !ok {
			conn.Close()
			return
		}
		cr.lifted = true
	}
	// The queue exists only for an authenticated client.
	c := &client{conn: conn, out: make(chan []byte, clientQueue), done: make(chan struct{})}
	defer func() {
		d.subMu.Lock()
		delete(d.subs, c)
		d.subMu.Unlock()
		c.close()
	}()
	go c.writer()
	for {
		m, err := dec.Decode()
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				c.send(proto.NewReply("0", fmt.Errorf("%v; closing the connection", err), nil))
				// Let the writer flush the error before closing.
				time.Sleep(50 * time.Millisecond)
			}
			return
		}
		c.send(d.handle(c, m))
		if c.takeover != nil {
			c.handed = make(chan struct{})
			select {
			case c.out <- nil:
				select {
				case <-c.handed:
				case <-c.done:
				}
			case <-c.done:
			}
			// Even on a connection that just died: the taker cleans up.
			_ = conn.SetWriteDeadline(time.Time{})
			c.takeover(conn)
			return
		}
	}
}

func (d *Daemon) authenticate(conn net.Conn, dec *proto.Decoder) bool {
	nonce := proto.NewNonce()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if err := (&proto.Msg{Name: "challenge", Attrs: map[string]string{"nonce": nonce}}).Encode(conn); err != nil {
		return false
	}
	m, err := dec.Decode()
	if err != nil {
		// No answer in time, or not XML: say why, then close.
		_ = proto.NewReply("0", fmt.Errorf("authentication failed: %v (answer the challenge with <auth hmac=...>)", err), nil).Encode(conn)
		return false
	}
	// Run refuses TCP with an empty password; never check an HMAC keyed
	// with nothing.
	if m.Name != "auth" || d.Cfg.Password == "" || !proto.CheckMAC(d.Cfg.Password, nonce, m.Get("hmac")) {
		log.Printf("control %s: authentication failed", conn.RemoteAddr())
		_ = proto.NewReply(m.ID(), errors.New("authentication failed: wrong password (see <password> in the switch's config)"), nil).Encode(conn)
		return false
	}
	return proto.NewReply(m.ID(), nil, nil).Encode(conn) == nil
}

// handle runs one request; a panic in a handler is an error reply, never
// the daemon's death.
func (d *Daemon) handle(c *client, m *proto.Msg) (reply *proto.Msg) {
	defer func() {
		if r := recover(); r != nil {
			log.Printf("panic in <%s>: %v", m.Name, r)
			reply = proto.NewReply(m.ID(), fmt.Errorf("internal error in <%s>: %v", m.Name, r), nil)
		}
	}()
	h, ok := d.verbs[m.Name]
	if !ok {
		return proto.NewReply(m.ID(), fmt.Errorf("unknown request <%s>; known: %s", m.Name, d.knownVerbs()), nil)
	}
	payload, err := h(d, c, m)
	if err == nil && !readOnly[m.Name] {
		d.journalChanged() // journal.go
	}
	return proto.NewReply(m.ID(), err, payload)
}

func (d *Daemon) knownVerbs() string {
	v := make([]string, 0, len(d.verbs))
	for k := range d.verbs {
		v = append(v, k)
	}
	sort.Strings(v)
	return strings.Join(v, ", ")
}

// Emit sends an event to every subscriber. kv are attribute pairs.
func (d *Daemon) Emit(typ string, kv ...string) {
	e := proto.Event{Type: typ, Attrs: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Attrs[kv[i]] = kv[i+1]
	}
	m := e.Msg()
	d.subMu.Lock()
	for c := range d.subs {
		c.send(m)
	}
	d.subMu.Unlock()
}

// CoreFeature is subscribe, ping and stop: what every switch answers.
func CoreFeature() Feature {
	return Feature{Name: "core", Verbs: []Verb{
		raw("subscribe", func(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
			d.subMu.Lock()
			d.subs[c] = struct{}{}
			d.subMu.Unlock()
			return nil, nil
		}),
		raw("ping", func(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
			return proto.EncodeReply(&proto.Pong{Pid: os.Getpid(), Network: d.Cfg.NetworkName})
		}),
		raw("list", listVerb),
		raw("stop", func(d *Daemon, c *client, m *proto.Msg) ([]byte, error) {
			go func() {
				time.Sleep(20 * time.Millisecond) // let the reply leave first
				d.Stop()
			}()
			return nil, nil
		}),
	}}
}
