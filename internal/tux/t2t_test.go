package tux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestHandshakeCodec(t *testing.T) {
	pw := []byte("secret")
	nL, nD := newNonce(), newNonce()
	if _, n, err := parseHello(encodeHello(nL)); err != nil || !bytes.Equal(n, nL) {
		t.Fatalf("hello: %v", err)
	}
	got, err := parseAuth(encodeAuth(pw, nL, nD), pw, nL)
	if err != nil || !bytes.Equal(got, nD) {
		t.Fatalf("auth: %v", err)
	}
	if _, err := parseAuth(encodeAuth([]byte("wrong"), nL, nD), pw, nL); !errors.Is(err, ErrT2TPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := parseAuth(encodeAuth(pw, newNonce(), nD), pw, nL); !errors.Is(err, ErrT2TPassword) {
		t.Fatalf("replayed auth for another nonce: %v", err)
	}
	if err := parseResult(encodeResult(t2tStatusOK, pw, nD, nL), pw, nD, nL); err != nil {
		t.Fatalf("result: %v", err)
	}
	// A listener that does not know the password cannot fake success.
	if err := parseResult(encodeResult(t2tStatusOK, []byte("x"), nD, nL), pw, nD, nL); !errors.Is(err, ErrT2TPassword) {
		t.Fatalf("fake listener: %v", err)
	}
	if err := parseResult(encodeResult(t2tStatusPassword, nil, nil, nil), pw, nD, nL); !errors.Is(err, ErrT2TPassword) {
		t.Fatalf("refused: %v", err)
	}
	if err := parseResult(encodeResult(t2tStatusVersion, nil, nil, nil), pw, nD, nL); !errors.Is(err, ErrT2TVersion) {
		t.Fatalf("version: %v", err)
	}
	h := encodeHello(nL)
	h[len(t2tMagic)] = 9
	if _, _, err := parseHello(h); !errors.Is(err, ErrT2TVersion) {
		t.Fatalf("version 9: %v", err)
	}
	for _, g := range []string{"", "GET / HTTP/1.1\r\n\r\n", strings.Repeat("x", 100)} {
		if _, _, err := parseHello([]byte(g)); !errors.Is(err, ErrT2TGarbage) {
			t.Fatalf("garbage %q: %v", g, err)
		}
	}
	// The password never appears in what travels.
	all := append(append(encodeHello(nL), encodeAuth(pw, nL, nD)...), encodeResult(0, pw, nD, nL)...)
	if bytes.Contains(all, pw) {
		t.Fatal("password in clear")
	}
}

func record(typ byte, p []byte) []byte {
	b := make([]byte, recHdrLen, recHdrLen+len(p))
	putRecordHdr(b, typ, len(p))
	return append(b, p...)
}

func TestReadRecord(t *testing.T) {
	frame := bytes.Repeat([]byte{0xab}, 60)
	for _, tc := range []struct {
		name string
		in   []byte
		typ  byte
		err  bool
	}{
		{"frame", record(recFrame, frame), recFrame, false},
		{"keepalive", record(recKeepalive, nil), recKeepalive, false},
		{"close", record(recClose, []byte("bye")), recClose, false},
		{"runt", record(recFrame, frame[:10]), 0, true},
		{"keepalive with data", record(recKeepalive, []byte{1}), 0, true},
		{"unknown type", record(9, frame), 0, true},
		{"long close", record(recClose, make([]byte, 2000)), 0, true},
		{"truncated", record(recFrame, frame)[:30], 0, true},
		{"huge", []byte{1, 0xff, 0xff, 0xff}, 0, true},
	} {
		typ, _, err := readRecord(bufio.NewReader(bytes.NewReader(tc.in)), make([]byte, maxRecord))
		if (err != nil) != tc.err || (!tc.err && typ != tc.typ) {
			t.Errorf("%s: type %d err %v", tc.name, typ, err)
		}
	}
}

func FuzzT2TRecords(f *testing.F) {
	f.Add(append(record(recFrame, make([]byte, 64)), record(recKeepalive, nil)...))
	f.Add([]byte{3, 0, 0, 2, 'h', 'i'})
	f.Fuzz(func(t *testing.T, in []byte) {
		// The buffered decoder and the in-place one (what the helper
		// runs) must agree record by record.
		r := bufio.NewReader(bytes.NewReader(in))
		fr := newSwitchReader(bytes.NewReader(in))
		buf := make([]byte, maxRecord)
		for i := 0; i < 1000; i++ {
			typ, p, err := readRecord(r, buf)
			typ2, p2, err2 := nextRecord(fr)
			if (err == nil) != (err2 == nil) || typ != typ2 || !bytes.Equal(p, p2) {
				t.Fatalf("decoders differ: %d %v %v / %d %v %v", typ, len(p), err, typ2, len(p2), err2)
			}
			if err != nil {
				return
			}
			if typ == recFrame && (len(p) < 14 || len(p) > maxRecord) {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
		}
	})
}

func FuzzT2THandshake(f *testing.F) {
	pw := []byte("pw")
	nL, nD := bytes.Repeat([]byte{1}, nonceLen), bytes.Repeat([]byte{2}, nonceLen)
	f.Add(encodeHello(nL))
	f.Add(encodeAuth(pw, nL, nD))
	f.Add(encodeResult(0, pw, nD, nL))
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, n, err := parseHello(in); err == nil && len(n) != nonceLen {
			t.Fatal("hello nonce size")
		}
		if _, err := parseAuth(in, pw, nL); err == nil && !bytes.Equal(in, encodeAuth(pw, nL, in[len(t2tMagic)+1:helloLen])) {
			t.Fatal("auth accepted without the password")
		}
		if err := parseResult(in, pw, nD, nL); err == nil && !bytes.Equal(in, encodeResult(0, pw, nD, nL)) {
			t.Fatal("result accepted without the password")
		}
	})
}

// t2tEnd is one helper in process with its switch side.
type t2tEnd struct {
	h      *t2tHelper
	sw     net.Conn // the switch's end
	events chan string
}

func socketpair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := net.FileConn(os.NewFile(uintptr(fds[0]), "a"))
	b, _ := net.FileConn(os.NewFile(uintptr(fds[1]), "b"))
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func startT2T(t *testing.T, pw string, args ...string) (*t2tEnd, error) {
	t.Setenv(T2TPasswordEnv, pw)
	mine, theirs := socketpair(t)
	pr, pw2 := io.Pipe()
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var r Reply
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Event != "" {
				events <- r.Event
			}
		}
	}()
	c := &ctl{enc: json.NewEncoder(pw2)}
	k, _, err := setupT2T(args, c, theirs)
	if err != nil {
		return nil, err
	}
	h := k.(*t2tHelper)
	go h.serve(theirs)
	t.Cleanup(func() {
		if h.ln != nil {
			h.ln.Close()
		}
		if s := h.cur.Load(); s != nil {
			s.close()
		}
	})
	return &t2tEnd{h: h, sw: mine, events: events}, nil
}

func sendFrame(t *testing.T, c net.Conn, b []byte) {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	if _, err := c.Write(append(l[:], b...)); err != nil {
		t.Fatal(err)
	}
}

func recvFrame(c net.Conn, d time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var l [4]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

func waitEvent(t *testing.T, e *t2tEnd, prefix string) {
	t.Helper()
	for {
		select {
		case ev := <-e.events:
			if strings.HasPrefix(ev, prefix) {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q event", prefix)
		}
	}
}

func TestT2TLink(t *testing.T) {
	l, err := startT2T(t, "pw", "--listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.h.ln.Addr().String()
	// Wrong password: a clear error at once (strict first dial).
	if _, err := startT2T(t, "bad", "--peer", addr, "--strict"); err == nil || !strings.Contains(err.Error(), "wrong t2t password") {
		t.Fatalf("wrong password: %v", err)
	}
	waitEvent(t, l, "refused")
	d, err := startT2T(t, "pw", "--peer", addr, "--strict")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, l, "up")
	frame := bytes.Repeat([]byte{0x5a}, 1514)
	frame[0] = 0xff
	// Both ways, a few times.
	for i := 0; i < 3; i++ {
		sendFrame(t, d.sw, frame)
		if got, err := recvFrame(l.sw, 5*time.Second); err != nil || !bytes.Equal(got, frame) {
			t.Fatalf("dialer->listener: %v", err)
		}
		sendFrame(t, l.sw, frame[:60])
		if got, err := recvFrame(d.sw, 5*time.Second); err != nil || !bytes.Equal(got, frame[:60]) {
			t.Fatalf("listener->dialer: %v", err)
		}
	}
	// Cut the TCP connection: the dialer redials and the link comes back.
	d.h.cur.Load().conn.Close()
	waitEvent(t, d, "down")
	waitEvent(t, d, "up")
	var ok bool
	for i := 0; i < 50 && !ok; i++ {
		sendFrame(t, d.sw, frame)
		got, err := recvFrame(l.sw, 200*time.Millisecond)
		ok = err == nil && bytes.Equal(got, frame)
	}
	if !ok {
		t.Fatal("no frames after reconnect")
	}
	// The dialer counts a frame after its write returns, so the listener
	// may have it before the count moves: wait for the count.
	deadline := time.Now().Add(5 * time.Second)
	for s := d.h.stats(); s.TxFrames < 4 && time.Now().Before(deadline); s = d.h.stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if s := d.h.stats(); s.TxFrames < 4 || s.State != "up" {
		t.Fatalf("dialer stats %+v", s)
	}
}

func TestT2TDropsWhileDown(t *testing.T) {
	// A dialer with nobody listening starts (it keeps trying) and counts
	// the frames it cannot send.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	d, err := startT2T(t, "pw", "--peer", addr, "--strict")
	if err != nil {
		t.Fatalf("a peer not there yet is no error: %v", err)
	}
	for i := 0; i < 5; i++ {
		sendFrame(t, d.sw, make([]byte, 60))
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.h.stats().Drops < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := d.h.stats(); s.Drops != 5 || s.State != "connecting" {
		t.Fatalf("stats %+v, want 5 drops while connecting", s)
	}
}

func TestT2TGarbagePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\nand more bytes to fill a hello"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	_, err = startT2T(t, "pw", "--peer", ln.Addr().String(), "--strict")
	if err == nil || !errors.Is(err, ErrT2TGarbage) {
		t.Fatalf("garbage peer: %v", err)
	}
	wg.Wait()
	// A listener given garbage refuses that connection and stays.
	l, err := startT2T(t, "pw", "--listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(bytes.Repeat([]byte("garbage!"), 20))
	waitEvent(t, l, "refused")
	c.Close()
	if _, err := startT2T(t, "pw", "--listen", l.h.ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "port taken") {
		t.Fatalf("port taken: %v", err)
	}
}
