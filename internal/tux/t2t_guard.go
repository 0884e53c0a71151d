package tux

import (
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"time"
)

// A t2t listener faces the network: anyone who reaches its port may try.
// t2tGuard bounds what strangers cost before they prove the secret: at
// most t2tMaxPending handshakes at once (each holds a few hundred bytes,
// the session buffers come after), at most t2tMaxFails failures per
// remote host per minute (then its connections are closed unanswered),
// and one log line and one event per t2tLogEvery for all refusals.
const (
	t2tMaxPending = 16
	t2tMaxFails   = 10
	t2tLogEvery   = 10 * time.Second
)

type t2tGuard struct {
	mu      sync.Mutex
	pending int
	fails   map[string][]time.Time

	lastLog    time.Time
	suppressed int
	logged     int // log lines written about refusals (tests)
	refusals   int // every refusal (tests)
}

var errT2TBusy = errors.New("too many handshakes at once")

func remoteHost(c net.Conn) string {
	h, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return h
}

// admit reserves a handshake slot for host, or says why not.
func (g *t2tGuard) admit(host string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fails == nil {
		g.fails = map[string][]time.Time{}
	}
	now := time.Now()
	recent := g.fails[host][:0]
	for _, t := range g.fails[host] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	if len(recent) == 0 {
		delete(g.fails, host)
	} else {
		g.fails[host] = recent
	}
	if len(recent) >= t2tMaxFails {
		return fmt.Errorf("%d failed handshakes from %s within a minute; closed unanswered", len(recent), host)
	}
	if g.pending >= t2tMaxPending {
		return errT2TBusy
	}
	g.pending++
	return nil
}

// done frees host's slot and counts a failure.
func (g *t2tGuard) done(host string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	if !ok && len(g.fails) < 4096 { // the map too stays bounded
		g.fails[host] = append(g.fails[host], time.Now())
	}
}

// refused logs and reports a refusal, at most once per t2tLogEvery.
func (t *t2tHelper) refused(conn net.Conn, err error) {
	g := &t.guard
	g.mu.Lock()
	g.refusals++
	if time.Since(g.lastLog) < t2tLogEvery {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	more := ""
	if g.suppressed > 0 {
		more = fmt.Sprintf(" (and %d more refusals not logged)", g.suppressed)
	}
	g.lastLog, g.suppressed = time.Now(), 0
	g.logged++
	g.mu.Unlock()
	log.Printf("t2t: refused %s: %v%s", conn.RemoteAddr(), err, more)
	t.c.Event(fmt.Sprintf("refused %s: %v%s", conn.RemoteAddr(), err, more))
}
