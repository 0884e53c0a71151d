package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// maxProcs bounds concurrent Exec requests in one guest.
const maxProcs = 64

// Server is the guest end of the agent line: it answers pings and runs
// Exec requests, each in its own process group, concurrently.
type Server struct {
	// Ready reports whether the CD was applied (Ping's answer) and a
	// status text for the host's error message.
	Ready func() (bool, string)
	// Env is the environment of executed commands (nil: the agent's).
	Env []string
	// Dir is their working directory ("" : /).
	Dir string
	Log *log.Logger

	wmu sync.Mutex
	w   io.Writer

	mu    sync.Mutex
	procs map[uint32]*proc
}

type proc struct {
	cmd   *exec.Cmd // nil while the request is still arriving
	req   []byte    // the request so far
	stdin *queue
}

// Serve reads requests from rw until it fails (EOF on a serial line
// should not happen; the caller decides whether to reopen).
func (s *Server) Serve(rw io.ReadWriter) error {
	s.w = rw
	s.mu.Lock()
	if s.procs == nil {
		s.procs = map[uint32]*proc{}
	}
	s.mu.Unlock()
	dec := NewDecoder(rw)
	for {
		f, err := dec.Next()
		if err != nil {
			return err
		}
		switch f.Type {
		case TExec, TStdin, TKill:
			// Acknowledge what the host counts in its window.
			s.send(TAck, f.ID, binary.BigEndian.AppendUint32(nil, uint32(headerLen+len(f.Payload)+trailerLen)))
		}
		switch f.Type {
		case TPing:
			ok, msg := true, "ready"
			if s.Ready != nil {
				ok, msg = s.Ready()
			}
			b := []byte{0}
			if ok {
				b[0] = 1
			}
			s.send(TPong, f.ID, append(b, msg...))
		case TExec:
			s.request(f.ID, f.Payload)
		case TStdin:
			s.mu.Lock()
			p := s.procs[f.ID]
			s.mu.Unlock()
			if p != nil {
				p.stdin.push(f.Payload)
			}
		case TKill:
			s.mu.Lock()
			p := s.procs[f.ID]
			s.mu.Unlock()
			if p != nil && p.cmd != nil && p.cmd.Process != nil {
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
		}
	}
}

func (s *Server) logf(format string, a ...any) {
	if s.Log != nil {
		s.Log.Printf(format, a...)
	}
}

func (s *Server) send(typ byte, id uint32, payload []byte) {
	for {
		n := min(len(payload), MaxPayload)
		b := AppendFrame(nil, typ, id, payload[:n])
		s.wmu.Lock()
		_, err := s.w.Write(b)
		s.wmu.Unlock()
		if err != nil {
			s.logf("agent line write: %v", err)
			return
		}
		payload = payload[n:]
		if len(payload) == 0 {
			return
		}
	}
}

// frameWriter sends what a process writes as frames of one type.
type frameWriter struct {
	s   *Server
	typ byte
	id  uint32
}

func (w frameWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.s.send(w.typ, w.id, p)
	}
	return len(p), nil
}

// request collects the pieces of an Exec request and starts it once whole.
func (s *Server) request(id uint32, piece []byte) {
	s.mu.Lock()
	p := s.procs[id]
	if p == nil {
		if len(s.procs) >= maxProcs {
			s.mu.Unlock()
			s.send(TExit, id, encodeExit(-1, fmt.Sprintf("%d commands already running; wait for some to end", maxProcs)))
			return
		}
		p = &proc{stdin: newQueue()}
		s.procs[id] = p
	}
	if p.cmd != nil {
		s.mu.Unlock()
		s.send(TExit, id, encodeExit(-1, fmt.Sprintf("request id %d already running", id)))
		return
	}
	p.req = append(p.req, piece...)
	n, err := execLen(p.req)
	if err == nil && len(p.req) > n {
		err = errors.New("exec: request longer than announced")
	}
	if err != nil {
		delete(s.procs, id)
		s.mu.Unlock()
		s.send(TExit, id, encodeExit(-1, err.Error()))
		return
	}
	if len(p.req) < n {
		s.mu.Unlock()
		return
	}
	argv, err := decodeExec(p.req)
	p.req = nil
	if err != nil {
		delete(s.procs, id)
		s.mu.Unlock()
		s.send(TExit, id, encodeExit(-1, err.Error()))
		return
	}
	s.start(id, p, argv)
}

// start runs argv for p; called with s.mu held, returns with it released.
func (s *Server) start(id uint32, p *proc, argv []string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if s.Env != nil {
		cmd.Env = s.Env
	}
	cmd.Dir = s.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdout = frameWriter{s, TStdout, id}
	cmd.Stderr = frameWriter{s, TStderr, id}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A command that leaves a daemon holding its stdout must still end.
	cmd.WaitDelay = 500 * time.Millisecond
	p.cmd = cmd
	s.mu.Unlock()

	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		s.mu.Lock()
		delete(s.procs, id)
		s.mu.Unlock()
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		s.send(TStderr, id, []byte(fmt.Sprintf("%s: %v\n", argv[0], err)))
		s.send(TExit, id, encodeExit(code, ""))
		return
	}
	go p.stdin.copyTo(stdin)
	go func() {
		err := cmd.Wait()
		p.stdin.close()
		code := 0
		if st := cmd.ProcessState; st != nil {
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = st.ExitCode()
			}
		} else if err != nil {
			code = -1
		}
		s.mu.Lock()
		delete(s.procs, id)
		s.mu.Unlock()
		s.send(TExit, id, encodeExit(code, ""))
	}()
}

// queue holds stdin chunks so the frame reader never blocks on a process
// that does not read its input.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	eof    bool
	closed bool
}

func newQueue() *queue {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push adds a chunk; an empty chunk means end of input.
func (q *queue) push(b []byte) {
	q.mu.Lock()
	if len(b) == 0 {
		q.eof = true
	} else if !q.eof && !q.closed {
		q.chunks = append(q.chunks, b)
	}
	q.cond.Broadcast()
	q.mu.Unlock()
}

// close drops pending input (the process ended).
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.chunks = nil
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) copyTo(w io.WriteCloser) {
	defer w.Close()
	for {
		q.mu.Lock()
		for len(q.chunks) == 0 && !q.eof && !q.closed {
			q.cond.Wait()
		}
		if q.closed || len(q.chunks) == 0 {
			q.mu.Unlock()
			return
		}
		b := q.chunks[0]
		q.chunks = q.chunks[1:]
		q.mu.Unlock()
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}
