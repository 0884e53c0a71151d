package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"cloonix/internal/proto"
)

// Timings of the bridge. After an event the lab is listed again within
// settle, so the page shows a change well within 200 ms; counters are
// refreshed every poll while a page watches.
const (
	settle = 10 * time.Millisecond
	poll   = time.Second
	redial = 500 * time.Millisecond
)

// live holds one connection to the switch and fans its lab and events
// out to every open page.
type live struct {
	dial func() (Switch, error)
	poll time.Duration // counters' refresh period while a page watches
	logf func(string, ...any)

	mu      sync.Mutex
	sw      Switch // nil while the switch is unreachable
	status  []byte // last status message
	lab     []byte // last lab message
	subs    map[*watcher]struct{}
	refresh chan struct{}
}

// watcher is one open page; its messages go through a bounded queue so
// a page that stops reading is dropped without slowing the others.
type watcher struct {
	out  chan []byte
	done chan struct{}
	once sync.Once
}

func (w *watcher) close() { w.once.Do(func() { close(w.done) }) }

func newLive(dial func() (Switch, error), logf func(string, ...any), period time.Duration) *live {
	l := &live{dial: dial, logf: logf, poll: period, subs: map[*watcher]struct{}{}, refresh: make(chan struct{}, 1)}
	l.status = mustJSON(map[string]any{"type": "status", "up": false, "error": "connecting to the switch"})
	return l
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// broadcast sends msg to every watcher (l.mu held).
func (l *live) broadcastLocked(msg []byte) {
	for w := range l.subs {
		select {
		case w.out <- msg:
		default:
			w.close()
			delete(l.subs, w)
		}
	}
}

func (l *live) watch() *watcher {
	w := &watcher{out: make(chan []byte, 256), done: make(chan struct{})}
	l.mu.Lock()
	w.out <- l.status
	if l.lab != nil {
		w.out <- l.lab
	}
	l.subs[w] = struct{}{}
	l.mu.Unlock()
	return w
}

func (l *live) unwatch(w *watcher) {
	l.mu.Lock()
	delete(l.subs, w)
	l.mu.Unlock()
	w.close()
}

func (l *live) watchers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs)
}

func (l *live) setStatus(sw Switch, err error) {
	m := map[string]any{"type": "status", "up": err == nil}
	if err != nil {
		m["error"] = err.Error()
	}
	b := mustJSON(m)
	l.mu.Lock()
	l.sw = sw
	if !bytes.Equal(b, l.status) {
		l.status = b
		l.broadcastLocked(b)
	}
	l.mu.Unlock()
}

func (l *live) current() (Switch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sw == nil {
		var st struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(l.status, &st)
		return nil, fmt.Errorf("the switch is not reachable (%s)", st.Error)
	}
	return l.sw, nil
}

// call forwards an edit and has the lab listed again at once.
func (l *live) call(req proto.Request) error {
	sw, err := l.current()
	if err != nil {
		return err
	}
	err = sw.Do(req, nil)
	l.poke()
	return err
}

func (l *live) list() (*proto.Lab, error) {
	sw, err := l.current()
	if err != nil {
		return nil, err
	}
	return sw.List()
}

func (l *live) poke() {
	select {
	case l.refresh <- struct{}{}:
	default:
	}
}

// publish sends the lab to the pages when it changed.
func (l *live) publish(lab *proto.Lab) {
	b := mustJSON(map[string]any{"type": "lab", "lab": lab})
	l.mu.Lock()
	if !bytes.Equal(b, l.lab) {
		l.lab = b
		l.broadcastLocked(b)
	}
	l.mu.Unlock()
}

// run keeps a connection to the switch, redialing after a loss, until stop.
func (l *live) run(stop <-chan struct{}) {
	for {
		err := l.session(stop)
		select {
		case <-stop:
			return
		default:
		}
		l.setStatus(nil, err)
		select {
		case <-stop:
			return
		case <-time.After(redial):
		}
	}
}

// session serves one switch connection; it returns why it ended.
func (l *live) session(stop <-chan struct{}) error {
	sw, err := l.dial()
	if err != nil {
		return err
	}
	defer sw.Close()
	events, err := sw.Subscribe()
	if err != nil {
		return err
	}
	lab, err := sw.List()
	if err != nil {
		return err
	}
	l.setStatus(sw, nil)
	l.publish(lab)
	// Events are drained by their own goroutine: the client's reader
	// blocks on a full event channel, and it must stay free to deliver
	// the replies to List below.
	changed := make(chan struct{}, 1)
	lost := make(chan struct{})
	go func() {
		defer close(lost)
		for e := range events {
			b := mustJSON(map[string]any{"type": "event", "event": e})
			l.mu.Lock()
			l.broadcastLocked(b)
			l.mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}()
	tick := time.NewTicker(l.poll)
	defer tick.Stop()
	var pending <-chan time.Time
	for {
		select {
		case <-stop:
			l.setStatus(nil, errors.New("graph server stopping"))
			return nil
		case <-sw.Done():
			return errors.New("connection to the switch lost")
		case <-lost:
			return errors.New("connection to the switch lost")
		case <-changed:
			if pending == nil {
				pending = time.After(settle)
			}
		case <-l.refresh:
			if pending == nil {
				pending = time.After(0)
			}
		case <-tick.C:
			if pending == nil && l.watchers() > 0 {
				pending = time.After(0)
			}
		case <-pending:
			pending = nil
			lab, err := sw.List()
			if err != nil {
				return err
			}
			l.publish(lab)
		}
	}
}

// apiLive is the page's live feed: status, lab and event messages (JSON
// text frames), from the server to the page only.
func (s *Server) apiLive(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if !s.authorized(r) {
		http.Error(w, "no valid session token; reload the page", http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context())
	wt := s.live.watch()
	defer s.live.unwatch(wt)
	for {
		select {
		case <-ctx.Done():
			return
		case <-wt.done:
			c.Close(websocket.StatusPolicyViolation, "page too slow; reconnect")
			return
		case b := <-wt.out:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return
			}
		}
	}
}
