package proto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is one control connection to a switch. Calls may be made from
// several goroutines; events arrive on Events() after Subscribe.
type Client struct {
	conn   net.Conn
	w      *bufio.Writer
	wmu    sync.Mutex
	mu     sync.Mutex
	next   int
	wait   map[string]chan *Msg
	events chan Event
	done   chan struct{}
	err    error
}

// Dial connects to server, "unix:PATH" or "tcp:HOST:PORT" (a bare path is
// a unix socket). For TCP, password answers the challenge.
func Dial(server, password string) (*Client, error) {
	conn, network, addr, err := dialRaw(server)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, w: bufio.NewWriter(conn), wait: map[string]chan *Msg{}, done: make(chan struct{})}
	dec := NewDecoder(bufio.NewReader(conn))
	if network == "tcp" {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := authenticate(conn, addr, password, dec.Decode); err != nil {
			conn.Close()
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Time{})
	}
	go c.readLoop(dec)
	return c, nil
}

func (c *Client) readLoop(dec *Decoder) {
	var err error
	for {
		var m *Msg
		m, err = dec.Decode()
		if err != nil {
			break
		}
		switch m.Name {
		case "event":
			c.mu.Lock()
			ev := c.events
			c.mu.Unlock()
			if ev != nil {
				ev <- EventFromMsg(m)
			}
		case "reply":
			c.mu.Lock()
			ch := c.wait[m.ID()]
			delete(c.wait, m.ID())
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}
	if err == io.EOF {
		err = errors.New("the switch closed the connection")
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.wait {
		close(ch)
		delete(c.wait, id)
	}
	if c.events != nil {
		close(c.events)
	}
	c.mu.Unlock()
	close(c.done)
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.done }

// Send issues a request and waits for its reply message.
func (c *Client) Send(verb string, args map[string]string, inner []byte) (*Msg, error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.next++
	id := strconv.Itoa(c.next)
	ch := make(chan *Msg, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	a := map[string]string{"id": id}
	for k, v := range args {
		a[k] = v
	}
	m := &Msg{Name: verb, Attrs: a, Inner: inner}
	c.wmu.Lock()
	err := m.Encode(c.w)
	if err == nil {
		err = c.w.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sending <%s>: %v", verb, err)
	}
	r, ok := <-ch
	if !ok {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("no reply to <%s>: %v", verb, err)
	}
	return r, nil
}

// Call issues a request and returns its payload, or the switch's error.
func (c *Client) Call(verb string, args map[string]string) ([]byte, error) {
	r, err := c.Send(verb, args, nil)
	if err != nil {
		return nil, err
	}
	if err := ReplyError(r); err != nil {
		return nil, err
	}
	return r.Inner, nil
}

// Do validates and sends a typed request; reply, when not nil, receives
// the reply's payload.
func (c *Client) Do(req Request, reply any) error {
	if err := req.Validate(); err != nil {
		return err
	}
	attrs, inner, err := EncodeRequest(req)
	if err != nil {
		return err
	}
	r, err := c.Send(req.Verb(), attrs, inner)
	if err != nil {
		return err
	}
	if err := ReplyError(r); err != nil {
		return err
	}
	if reply == nil {
		return nil
	}
	return DecodeReply(req.Verb(), r.Inner, reply)
}

// List fetches the running lab.
func (c *Client) List() (*Lab, error) {
	lab := &Lab{}
	if err := c.Do(List, lab); err != nil {
		return nil, err
	}
	lab.Normalize()
	return lab, nil
}

// Subscribe asks for events; they arrive on the returned channel, which
// is closed when the connection ends.
func (c *Client) Subscribe() (<-chan Event, error) {
	c.mu.Lock()
	if c.events == nil {
		c.events = make(chan Event, 1024)
	}
	ev := c.events
	c.mu.Unlock()
	if err := c.Do(Subscribe, nil); err != nil {
		return nil, err
	}
	return ev, nil
}

// dialRaw connects to "unix:PATH", "tcp:HOST:PORT" or a bare unix path.
func dialRaw(server string) (conn net.Conn, network, addr string, err error) {
	network, addr = "unix", server
	switch {
	case strings.HasPrefix(server, "unix:"):
		addr = server[5:]
	case strings.HasPrefix(server, "tcp:"):
		network, addr = "tcp", server[4:]
	}
	conn, err = net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, network, addr, fmt.Errorf("cannot reach the switch at %s:%s: %v (is it running? `cloonix start`)", network, addr, err)
	}
	return conn, network, addr, nil
}

// authenticate answers a TCP switch's challenge; read returns the next
// message (the caller chooses how messages are read from conn).
func authenticate(conn net.Conn, addr, password string, read func() (*Msg, error)) error {
	ch, err := read()
	if err != nil || ch.Name != "challenge" {
		return fmt.Errorf("switch at %s sent no challenge: %v", addr, err)
	}
	auth := &Msg{Name: "auth", Attrs: map[string]string{"id": "0", "hmac": AuthMAC(password, ch.Get("nonce"))}}
	if err := auth.Encode(conn); err != nil {
		return err
	}
	r, err := read()
	if err != nil {
		return fmt.Errorf("switch at %s closed the connection during authentication: %v", addr, err)
	}
	return ReplyError(r)
}
