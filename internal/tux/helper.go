package tux

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The switch's half of the helper protocol (the helper's half is
// tux.go): Helper starts a kind's helper process, joins its socket to
// the tux's port (Spec.Plug), answers Call with the helper's JSON
// replies, relaunches the helper when it dies (on a fresh socketpair,
// re-sending its forwards) and stops it for good with Stop.

// Timings of the supervision.
const (
	relaunchDelay = 50 * time.Millisecond // before relaunching a dead helper
	relaunchRetry = time.Second           // between failed relaunches
	helperStartup = 15 * time.Second      // for the helper's first line
	helperCall    = 5 * time.Second       // for an answer
)

// Events receives the helper's events (the daemon's Emit): tux_started,
// tux_died, tux_relaunched, tux_relaunch_failed, tux_link,
// forward_failed, each with name=... and key/value pairs.
type Events func(typ string, kv ...string)

// Forward is one slirp port forward.
type Forward struct{ Proto, Host, Guest string }

// Helper is one tux: its kind, its plan and its helper process.
type Helper struct {
	spec   Spec
	kind   Kind
	plan   Plan
	events Events

	mu       sync.Mutex
	p        *proc
	pid      int
	restarts int
	state    string // starting, running, restarting, stopped
	info     map[string]string
	forwards []Forward
	held     *os.File // a descriptor kept across relaunches (tap)
	// local gives the counters when the switch moves the frames itself
	// (tap): the helper has none then.
	local func() Stats
	// engine is what the switch side keeps across relaunches (vxlan's
	// UDP socket), closed with the tux.
	engine   io.Closer
	pending  map[int]chan Reply
	nextID   int
	stopping bool
	exited   chan struct{}
}

// Start checks spec, starts its helper and plugs it in (New, then Launch).
func Start(spec Spec, events Events) (*Helper, error) {
	h, err := New(spec, events)
	if err != nil {
		return nil, err
	}
	return h, h.Launch()
}

// New checks spec and returns its helper, not started yet.
func New(spec Spec, events Events) (*Helper, error) {
	k, plan, err := Check(&spec)
	if err != nil {
		return nil, err
	}
	if events == nil {
		events = func(string, ...string) {}
	}
	return &Helper{spec: spec, kind: k, plan: plan, events: events, state: "starting", info: map[string]string{}}, nil
}

// Name is the tux's name.
func (h *Helper) Name() string { return h.spec.Name }

// Kind is the tux's kind.
func (h *Helper) Kind() string { return h.spec.Kind }

// Pid is the current helper's process id.
func (h *Helper) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pid
}

// Launch starts the helper the first time; on failure it leaves nothing
// behind (Stop need not be called).
func (h *Helper) Launch() error {
	for _, f := range h.plan.Fresh {
		_ = os.Remove(f)
	}
	if err := h.launch(true); err != nil {
		h.closeHeld()
		h.closeEngine()
		return err
	}
	return nil
}

func (h *Helper) logPath() string { return filepath.Join(h.spec.Dir, h.spec.Name+".log") }

// launch starts the helper and plugs it into the port. first is the
// add_tux launch.
func (h *Helper) launch(first bool) error {
	args := h.plan.Args
	if first && h.plan.Strict {
		args = append(append([]string(nil), args...), "--strict")
	}
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	p, err := startProc(h.spec.Kind, args, h.plan.Env, held, h.logPath())
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = p.cmd.Wait()
		close(exited)
	}()
	fail := func(err error) error {
		p.kill()
		<-exited
		p.sock.Close()
		p.stdin.Close()
		p.stdout.Close()
		return err
	}
	lines := bufio.NewScanner(p.stdout)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	r, err := firstReply(lines, exited, &waitErr, h.logPath())
	if err != nil {
		return fail(err)
	}
	conn, err := net.FileConn(p.sock)
	p.sock.Close()
	if err != nil {
		return fail(err)
	}
	h.mu.Lock()
	for k, v := range r.Info {
		h.info[k] = v
	}
	h.mu.Unlock()
	fc, err := h.kind.SwitchConn(conn.(*net.UnixConn), h)
	if err != nil {
		conn.Close()
		return fail(err)
	}
	h.mu.Lock()
	if h.stopping {
		// Stop came while this helper was starting.
		h.mu.Unlock()
		fc.Close()
		return fail(fmt.Errorf("tux %s was deleted while its helper started", h.spec.Name))
	}
	h.p, h.pid, h.state, h.exited = p, p.pid(), "running", exited
	h.pending = map[int]chan Reply{}
	h.keepListenPort(r.Info["listen"])
	h.mu.Unlock()
	h.spec.Plug(fc)
	go func() {
		h.readReplies(lines)
		p.stdout.Close()
	}()
	go h.watch(p, exited, &waitErr)
	h.events("tux_started", "name", h.spec.Name, "kind", h.spec.Kind, "pid", strconv.Itoa(p.pid()))
	return nil
}

// firstReply waits for the helper's first line: whether it could set
// itself up.
func firstReply(lines *bufio.Scanner, exited chan struct{}, waitErr *error, logPath string) (*Reply, error) {
	first := make(chan *Reply, 1)
	go func() {
		if !lines.Scan() {
			first <- nil
			return
		}
		var r Reply
		if json.Unmarshal(lines.Bytes(), &r) != nil {
			r.Error = "helper said: " + lines.Text()
		}
		first <- &r
	}()
	select {
	case r := <-first:
		if r == nil {
			<-exited
			return nil, fmt.Errorf("its helper exited at start (%v); see %s", *waitErr, logPath)
		}
		if r.Error != "" {
			return nil, errors.New(r.Error)
		}
		return r, nil
	case <-time.After(helperStartup):
		return nil, fmt.Errorf("its helper did not start within %v (see %s)", helperStartup, logPath)
	}
}

// keepListenPort: a t2t listener on port 0 keeps the port it got, so
// the peer finds it again after a relaunch. Callers hold h.mu.
func (h *Helper) keepListenPort(l string) {
	if l == "" {
		return
	}
	args := append([]string(nil), h.plan.Args...)
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--listen" {
			args[i+1] = l
		}
	}
	h.plan.Args = args
}

// hold keeps f (the tap) for the next launches, closing the one before.
func (h *Helper) hold(f *os.File) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil && h.held != f {
		h.held.Close()
	}
	h.held = f
}

func (h *Helper) closeHeld() { h.hold(nil) }

// readReplies dispatches the helper's lines: answers and events.
func (h *Helper) readReplies(lines *bufio.Scanner) {
	for lines.Scan() {
		var r Reply
		if json.Unmarshal(lines.Bytes(), &r) != nil {
			continue
		}
		if r.Event != "" {
			state, detail, _ := strings.Cut(r.Event, " ")
			h.events("tux_link", "name", h.spec.Name, "state", state, "detail", detail)
			continue
		}
		h.mu.Lock()
		ch := h.pending[r.ID]
		delete(h.pending, r.ID)
		h.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// watch waits for the helper's end and relaunches it unless stopping.
func (h *Helper) watch(p *proc, exited chan struct{}, waitErr *error) {
	<-exited
	h.mu.Lock()
	for id, ch := range h.pending {
		close(ch)
		delete(h.pending, id)
	}
	if h.stopping || h.p != p {
		h.mu.Unlock()
		return
	}
	h.state = "restarting"
	pid := h.pid
	h.mu.Unlock()
	status := "exited"
	if *waitErr != nil {
		status = (*waitErr).Error()
	}
	name := h.spec.Name
	log.Printf("tux %s: helper %d died (%s); relaunching", name, pid, status)
	h.events("tux_died", "name", name, "pid", strconv.Itoa(pid), "status", status)
	delay := relaunchDelay
	for {
		time.Sleep(delay)
		h.mu.Lock()
		stopping := h.stopping
		h.mu.Unlock()
		if stopping {
			return
		}
		err := h.launch(false)
		if err == nil {
			break
		}
		log.Printf("tux %s: relaunch failed: %v", name, err)
		h.events("tux_relaunch_failed", "name", name, "error", err.Error())
		delay = relaunchRetry
	}
	h.mu.Lock()
	h.restarts++
	n, fw, newPid := h.restarts, append([]Forward(nil), h.forwards...), h.pid
	h.mu.Unlock()
	for _, f := range fw {
		if _, err := h.Call(Request{Op: "forward_add", Proto: f.Proto, Host: f.Host, Guest: f.Guest}); err != nil {
			log.Printf("tux %s: forward %s %s again: %v", name, f.Proto, f.Host, err)
			h.events("forward_failed", "name", name, "proto", f.Proto, "host", f.Host, "error", err.Error())
		}
	}
	h.events("tux_relaunched", "name", name, "pid", strconv.Itoa(newPid), "restarts", strconv.Itoa(n))
}

// Call sends one request to the helper and waits for its answer.
func (h *Helper) Call(req Request) (Reply, error) { return h.CallTimeout(req, helperCall) }

// CallTimeout is Call with its own patience.
func (h *Helper) CallTimeout(req Request, d time.Duration) (Reply, error) {
	h.mu.Lock()
	if h.p == nil || h.state != "running" {
		h.mu.Unlock()
		return Reply{}, fmt.Errorf("tux %s is %s; try again in a moment", h.spec.Name, h.state)
	}
	h.nextID++
	req.ID = h.nextID
	ch := make(chan Reply, 1)
	h.pending[req.ID] = ch
	b, _ := json.Marshal(req)
	_, err := h.p.stdin.Write(append(b, '\n'))
	h.mu.Unlock()
	if err != nil {
		return Reply{}, fmt.Errorf("tux %s: its helper is gone", h.spec.Name)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return Reply{}, fmt.Errorf("tux %s: its helper died; try again in a moment", h.spec.Name)
		}
		if r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, nil
	case <-time.After(d):
		h.mu.Lock()
		delete(h.pending, req.ID)
		h.mu.Unlock()
		return Reply{}, fmt.Errorf("tux %s: its helper did not answer within %v", h.spec.Name, d)
	}
}

// Stats asks the helper for its counters (and its state): the switch's
// own when it moves the frames itself.
func (h *Helper) Stats(d time.Duration) (*Stats, error) {
	r, err := h.CallTimeout(Request{Op: "stats"}, d)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	local := h.local
	h.mu.Unlock()
	if local != nil && r.Stats != nil {
		st := local()
		return &st, nil
	}
	return r.Stats, nil
}

// keepEngine returns the tux's engine, making it with mk at the first
// launch.
func (h *Helper) keepEngine(mk func() (io.Closer, error)) (io.Closer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.engine != nil {
		return h.engine, nil
	}
	e, err := mk()
	if err == nil {
		h.engine = e
	}
	return e, err
}

// closeEngine closes the engine, if any.
func (h *Helper) closeEngine() {
	h.mu.Lock()
	e := h.engine
	h.engine = nil
	h.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// setLocalStats makes Stats report the switch side's counters.
func (h *Helper) setLocalStats(f func() Stats) {
	h.mu.Lock()
	h.local = f
	h.mu.Unlock()
}

// infoValue is what the helper's first line said of key (for the
// kind's SwitchConn: it runs before the launch is recorded).
func (h *Helper) infoValue(key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info[key]
}

// Stop ends the helper for good: stdin closes (it exits), then a kill
// if it lingers. Its fresh files go too.
func (h *Helper) Stop() {
	h.mu.Lock()
	h.stopping = true
	h.state = "stopped"
	p, exited := h.p, h.exited
	h.mu.Unlock()
	if p != nil {
		p.stdin.Close()
		select {
		case <-exited:
		case <-time.After(time.Second):
			p.kill()
			<-exited
		}
	}
	h.closeHeld()
	h.closeEngine()
	for _, f := range h.plan.Fresh {
		_ = os.Remove(f)
	}
}
