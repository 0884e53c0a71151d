package proto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// A capture turns its control connection into a stream (docs/protocol.md,
// "Capture streams"): after the ok reply come chunks of pcapng, each a
// 4-byte big-endian length and its bytes; a zero length ends them and one
// <capture_end .../> line follows. Every message before the stream is one
// line, so the client reads lines and never reads past the reply.

// CaptureEnd is the switch's summary of a finished capture.
type CaptureEnd struct {
	Frames  int64  // frames written
	Dropped uint64 // frames the capture missed (its reader was behind)
	Reason  string // count reached, duration reached, stopped by the client, ...
}

// CaptureStream is a running capture.
type CaptureStream struct {
	conn net.Conn
	r    *bufio.Reader
	left uint32 // bytes left in the current chunk
	end  *CaptureEnd
	err  error
}

// DialCapture connects to server (as Dial) and starts the capture req
// asks for.
func DialCapture(server, password string, req *Capture) (*CaptureStream, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	args, _, err := EncodeRequest(req)
	if err != nil {
		return nil, err
	}
	conn, network, addr, err := dialRaw(server)
	if err != nil {
		return nil, err
	}
	s := &CaptureStream{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	fail := func(err error) (*CaptureStream, error) {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if network == "tcp" {
		if err := authenticate(conn, addr, password, s.line); err != nil {
			return fail(err)
		}
	}
	a := map[string]string{"id": "1"}
	for k, v := range args {
		a[k] = v
	}
	if err := (&Msg{Name: req.Verb(), Attrs: a}).Encode(conn); err != nil {
		return fail(err)
	}
	r, err := s.line()
	if err != nil {
		return fail(fmt.Errorf("no reply to <capture>: %v", err))
	}
	if err := ReplyError(r); err != nil {
		return fail(err)
	}
	_ = conn.SetDeadline(time.Time{})
	return s, nil
}

// line reads one message that sits on one line.
func (s *CaptureStream) line() (*Msg, error) {
	b, err := s.r.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = errors.New("the switch closed the connection")
		}
		return nil, err
	}
	return NewDecoder(bytes.NewReader(b)).Decode()
}

// Read returns pcapng bytes; io.EOF once the switch ended the capture
// (End then holds its summary).
func (s *CaptureStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for s.left == 0 {
		var h [4]byte
		if _, err := io.ReadFull(s.r, h[:]); err != nil {
			s.err = fmt.Errorf("capture stream cut: %v", err)
			return 0, s.err
		}
		s.left = binary.BigEndian.Uint32(h[:])
		if s.left == 0 {
			m, err := s.line()
			if err != nil || m.Name != "capture_end" {
				s.err = fmt.Errorf("capture stream: bad end: %v", err)
				return 0, s.err
			}
			e := &CaptureEnd{Reason: m.Get("reason")}
			e.Frames, _ = strconv.ParseInt(m.Get("frames"), 10, 64)
			e.Dropped, _ = strconv.ParseUint(m.Get("dropped"), 10, 64)
			s.end, s.err = e, io.EOF
			return 0, io.EOF
		}
	}
	if uint32(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= uint32(n)
	if err != nil {
		s.err = fmt.Errorf("capture stream cut: %v", err)
		return n, s.err
	}
	return n, nil
}

// End is the switch's summary, once Read returned io.EOF (else nil).
func (s *CaptureStream) End() *CaptureEnd { return s.end }

// Stop asks the switch to end the capture; Read then drains what is left
// and the summary.
func (s *CaptureStream) Stop() error {
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.conn.Close()
}

// Close drops the connection (the switch ends the capture too).
func (s *CaptureStream) Close() error { return s.conn.Close() }
