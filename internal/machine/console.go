package machine

import (
	"io"
	"net"
	"os"
	"sync"
)

// Console relays a guest's serial console to any number of clients on a
// unix socket (`cloonix console VM`), keeps the last output to replay to
// a new client, and logs it to a file. Input from every client goes to the
// guest. A client that does not read is dropped, never the guest.
type Console struct {
	path string
	l    *net.UnixListener
	log  *os.File

	mu      sync.Mutex
	src     io.ReadWriteCloser
	ring    []byte
	clients map[*consoleClient]struct{}
	closed  bool
}

type consoleClient struct {
	c   net.Conn
	out chan []byte
}

const (
	consoleRing   = 64 << 10
	consoleLogMax = 8 << 20
)

// NewConsole listens at path and logs to logPath; Attach gives it the
// guest side.
func NewConsole(path, logPath string) *Console {
	c := &Console{path: path, clients: map[*consoleClient]struct{}{}}
	c.log, _ = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	_ = os.Remove(path)
	if l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"}); err == nil {
		_ = os.Chmod(path, 0o600)
		c.l = l
		go c.accept()
	}
	return c
}

// Attach starts relaying the guest's console line.
func (c *Console) Attach(src io.ReadWriteCloser) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		src.Close()
		return
	}
	c.src = src
	c.mu.Unlock()
	go c.read(src)
}

func (c *Console) read(src io.Reader) {
	logged := 0
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b := append([]byte(nil), buf[:n]...)
			if c.log != nil && logged < consoleLogMax {
				w, _ := c.log.Write(b)
				logged += w
			}
			c.mu.Lock()
			c.ring = append(c.ring, b...)
			if len(c.ring) > consoleRing {
				c.ring = append([]byte(nil), c.ring[len(c.ring)-consoleRing:]...)
			}
			for cl := range c.clients {
				select {
				case cl.out <- b:
				default:
					cl.c.Close()
				}
			}
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (c *Console) accept() {
	for {
		conn, err := c.l.Accept()
		if err != nil {
			return
		}
		cl := &consoleClient{c: conn, out: make(chan []byte, 256)}
		c.mu.Lock()
		if len(c.ring) > 0 {
			cl.out <- append([]byte(nil), c.ring...)
		}
		c.clients[cl] = struct{}{}
		c.mu.Unlock()
		go func() {
			for b := range cl.out {
				if _, err := conn.Write(b); err != nil {
					conn.Close()
					return
				}
			}
		}()
		go func() {
			buf := make([]byte, 1024)
			for {
				n, err := conn.Read(buf)
				if n > 0 {
					c.mu.Lock()
					src := c.src
					c.mu.Unlock()
					if src != nil {
						_, _ = src.Write(buf[:n])
					}
				}
				if err != nil {
					break
				}
			}
			conn.Close()
			c.mu.Lock()
			if _, ok := c.clients[cl]; ok {
				delete(c.clients, cl)
				close(cl.out)
			}
			c.mu.Unlock()
		}()
	}
}

// Close ends the relay and every client; the log file stays.
func (c *Console) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	src := c.src
	for cl := range c.clients {
		cl.c.Close()
	}
	c.mu.Unlock()
	if c.l != nil {
		c.l.Close()
	}
	if src != nil {
		src.Close()
	}
	if c.log != nil {
		c.log.Close()
	}
}
