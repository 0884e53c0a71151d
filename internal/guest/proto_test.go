package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFrameRoundTripWithNoise(t *testing.T) {
	var stream []byte
	stream = append(stream, "login: \xc7garbage\xc7\x58\x01"...) // noise, a false magic
	want := []Frame{
		{TPing, 1, []byte{}},
		{TStdout, 7, bytes.Repeat([]byte("x"), MaxPayload)},
		{TExit, 7, encodeExit(-3, "boom")},
	}
	for i, f := range want {
		stream = AppendFrame(stream, f.Type, f.ID, f.Payload)
		if i == 0 {
			// A corrupted frame in between is skipped.
			bad := AppendFrame(nil, TPing, 9, []byte("abc"))
			bad[len(bad)-1] ^= 0xff
			stream = append(stream, bad...)
		}
	}
	dec := NewDecoder(&oneByteReader{bytes.NewReader(stream)})
	for _, w := range want {
		f, err := dec.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != w.Type || f.ID != w.ID || !bytes.Equal(f.Payload, w.Payload) {
			t.Fatalf("got %d/%d/%d bytes, want %d/%d/%d bytes", f.Type, f.ID, len(f.Payload), w.Type, w.ID, len(w.Payload))
		}
	}
	if _, err := dec.Next(); err != io.EOF {
		t.Fatalf("want EOF at the end, got %v", err)
	}
	if dec.Skipped == 0 {
		t.Fatal("noise was not counted as skipped")
	}
}

// oneByteReader returns one byte per Read, the worst case of a serial line.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestExecEncoding(t *testing.T) {
	for _, argv := range [][]string{{"true"}, {"sh", "-c", "echo 'a b'"}, {"", "\x00\xff"}} {
		b, err := encodeExec(argv)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeExec(b)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(argv) || len(got) != len(argv) {
			t.Fatalf("%q: got %q %v", argv, got, err)
		}
	}
	if _, err := encodeExec(nil); err == nil {
		t.Fatal("empty argv accepted")
	}
	for _, bad := range [][]byte{nil, {0, 0, 0, 2, 0, 0}, {0, 0, 0, 2, 0, 1}, {0, 0, 0, 7, 0, 1, 0, 0, 0, 5, 'a'}, {0, 0, 0, 7, 0, 1, 0, 0, 0, 0, 'x'}, {0, 0, 0, 9, 0, 1}} {
		if _, err := decodeExec(bad); err == nil {
			t.Fatalf("%x accepted", bad)
		}
	}
}

// pipePair connects a Client and a Server in memory.
func pipePair(t *testing.T, ready func() (bool, string)) *Client {
	t.Helper()
	a, b := net.Pipe()
	s := &Server{Ready: ready}
	go s.Serve(b)
	c := NewClient(a)
	t.Cleanup(func() { c.Close(); b.Close() })
	return c
}

func TestClientServer(t *testing.T) {
	c := pipePair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 200000) // 3.2 MB, many frames
	tests := []struct {
		argv           []string
		stdin          string
		stdout, stderr string
		code           int
	}{
		{[]string{"true"}, "", "", "", 0},
		{[]string{"false"}, "", "", "", 1},
		{[]string{"sh", "-c", "echo out; echo err >&2; exit 42"}, "", "out\n", "err\n", 42},
		{[]string{"cat"}, "hello\x00world", "hello\x00world", "", 0},
		{[]string{"cat"}, big, big, "", 0},
		{[]string{"sh", "-c", "kill -9 $$"}, "", "", "", 137},
		{[]string{"sh", "-c", "sleep 60 & echo started"}, "", "started\n", "", 0}, // a leftover child holding stdout
	}
	for _, tc := range tests {
		out, errb, code, err := c.Exec(ctx, tc.argv, []byte(tc.stdin))
		if err != nil {
			t.Fatalf("%q: %v", tc.argv, err)
		}
		if string(out) != tc.stdout || string(errb) != tc.stderr || code != tc.code {
			t.Fatalf("%q: got code %d stdout %d bytes %.40q stderr %q; want %d %.40q %q", tc.argv, code, len(out), out, errb, tc.code, tc.stdout, tc.stderr)
		}
	}
	// A command line longer than one frame piece.
	long := strings.Repeat("y", 3*HostChunk)
	out, _, code, err := c.Exec(ctx, []string{"echo", long, long}, nil)
	if err != nil || code != 0 || string(out) != long+" "+long+"\n" {
		t.Fatalf("long argv: code %d, %d bytes, %v", code, len(out), err)
	}
	_, errb, code, err := c.Exec(ctx, []string{"/no/such/cmd"}, nil)
	if err != nil || code != 127 || !strings.Contains(string(errb), "/no/such/cmd") {
		t.Fatalf("missing command: code %d stderr %q err %v", code, errb, err)
	}
}

func TestConcurrentExec(t *testing.T) {
	c := pipePair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			script := fmt.Sprintf("i=0; while [ $i -lt 2000 ]; do echo line-%d-$i; i=$((i+1)); done; exit %d", i, i)
			out, _, code, err := c.Exec(ctx, []string{"sh", "-c", script}, nil)
			if err != nil {
				errs <- err
				return
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if code != i || len(lines) != 2000 || lines[1999] != fmt.Sprintf("line-%d-1999", i) {
				errs <- fmt.Errorf("exec %d: code %d, %d lines", i, code, len(lines))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestExecCancelKills(t *testing.T) {
	c := pipePair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err := c.Exec(ctx, []string{"sleep", "30"}, nil)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled exec: err %v after %v", err, time.Since(start))
	}
	// The line still works afterwards.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, _, code, err := c.Exec(ctx2, []string{"true"}, nil); err != nil || code != 0 {
		t.Fatalf("after cancel: %d %v", code, err)
	}
}

func TestPingWaitsForReady(t *testing.T) {
	var mu sync.Mutex
	ready := false
	c := pipePair(t, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return ready, "applying the config CD"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := c.Ping(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "applying the config CD") {
		t.Fatalf("ping before ready: %v", err)
	}
	mu.Lock()
	ready = true
	mu.Unlock()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestClosedLine(t *testing.T) {
	a, b := net.Pipe()
	c := NewClient(a)
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping on a dead line succeeded")
	}
	if _, _, _, err := c.Exec(ctx, []string{"true"}, nil); err == nil {
		t.Fatal("exec on a dead line succeeded")
	}
	c.Close()
}

func FuzzDecoder(f *testing.F) {
	f.Add(AppendFrame([]byte("noise"), TExec, 3, []byte{0, 0, 0, 7, 0, 1, 0, 0, 0, 1, 'x'}))
	f.Add(AppendFrame(nil, TExit, 1, encodeExit(1, "")))
	f.Add([]byte{magic0, magic1, 1, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := NewDecoder(bytes.NewReader(data))
		for i := 0; i < 1000; i++ {
			fr, err := dec.Next()
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatal("oversized payload")
			}
			// Every decoded frame re-encodes to bytes found in the input.
			if !bytes.Contains(data, AppendFrame(nil, fr.Type, fr.ID, fr.Payload)) {
				t.Fatal("decoded a frame that is not in the input")
			}
			if fr.Type == TExec {
				decodeExec(fr.Payload)
			}
			if fr.Type == TExit {
				decodeExit(fr.Payload)
			}
		}
	})
}

// FuzzServer feeds arbitrary bytes to the agent's request loop: it must
// neither panic nor run anything but what a well-formed request names.
func FuzzServer(f *testing.F) {
	req, _ := encodeExec([]string{"true"})
	f.Add(AppendFrame(AppendFrame(nil, TExec, 1, req), TStdin, 1, nil))
	f.Add(AppendFrame(nil, TExec, 2, []byte{0, 0, 0, 200, 0, 1}))
	f.Add(AppendFrame(AppendFrame(nil, TKill, 5, nil), TPing, 5, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Only Exec frames whose argv is "true" may start a process.
		dec := NewDecoder(bytes.NewReader(data))
		for {
			fr, err := dec.Next()
			if err != nil {
				break
			}
			if fr.Type == TExec {
				return // running arbitrary commands is not what we fuzz
			}
		}
		var out bytes.Buffer
		s := &Server{}
		s.Serve(&rwPair{bytes.NewReader(data), &out})
		o := NewDecoder(bytes.NewReader(out.Bytes()))
		for {
			if _, err := o.Next(); err != nil {
				break
			}
		}
	})
}

type rwPair struct {
	io.Reader
	w io.Writer
}

func (p *rwPair) Write(b []byte) (int, error) { return p.w.Write(b) }

// TestPingDoesNotPileUp: while nobody reads the line (a booting guest),
// pings wait in the socket one a second at most (a nudge for a line that
// reads on edges), never more than maxPiledPings of them.
func TestPingDoesNotPileUp(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostF := os.NewFile(uintptr(fds[0]), "host")
	guestF := os.NewFile(uintptr(fds[1]), "guest")
	defer guestF.Close()
	conn, err := net.FileConn(hostF)
	hostF.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	c.Ping(ctx) // nobody answers
	n, err := unix.IoctlGetInt(fds[1], unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	if one := headerLen + trailerLen; n < one || n > 2*one {
		t.Fatalf("%d bytes of pings wait unread after 1.5 s, want one or two pings of %d", n, one)
	}
	// A guest that never answered is explained by its line's counts.
	if d, want := c.Diag(), fmt.Sprintf("%d pings sent, some unread by the guest's emulator: true; 0 frames received", n/(headerLen+trailerLen)); !strings.Contains(d, want) {
		t.Fatalf("Diag: %s; want %q", d, want)
	}
	// Once the guest reads, pings flow again and the agent answers.
	s := &Server{}
	go s.Serve(guestF)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := c.Ping(ctx2); err != nil {
		t.Fatal(err)
	}
}

// decodeWork decodes stream to its end and returns the decoder's work:
// bytes consumed plus bytes checksummed (a count, not a time, so the cost
// tests below cannot be flaky).
func decodeWork(stream []byte) (work, frames int) {
	dec := NewDecoder(bytes.NewReader(stream))
	for {
		if _, err := dec.Next(); err != nil {
			return dec.work, frames
		}
		frames++
	}
}

// repeatTo repeats unit up to n bytes.
func repeatTo(unit []byte, n int) []byte {
	b := make([]byte, 0, n+len(unit))
	for len(b) < n {
		b = append(b, unit...)
	}
	return b[:n]
}

// fakeHeader is a frame header announcing a payload of n bytes, never
// followed by its CRC: crafted noise from a guest.
func fakeHeader(n uint32) []byte {
	h := []byte{magic0, magic1, TStdout, 0, 0, 0, 0, 1}
	return binary.BigEndian.AppendUint32(h, n)
}

// plainWork is the decoder's work on random noise of n bytes.
func plainWork(n int) int {
	noise := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	w, _ := decodeWork(noise)
	return w
}

// Issue 15 item 11: crafted noise (fake headers announcing big frames, so
// that every false magic makes the decoder checksum up to MaxPayload
// bytes) costs within 10x of plain noise of the same length.
func TestDecoderCraftedNoiseCost(t *testing.T) {
	const n = 1 << 20
	plain := plainWork(n)
	good := AppendFrame(nil, TStdout, 9, []byte("hello"))
	tests := []struct {
		name   string
		stream []byte
	}{
		{"headers announcing MaxPayload", repeatTo(fakeHeader(MaxPayload), n)},
		{"headers announcing 4 KiB", repeatTo(fakeHeader(4096), n)},
		{"magics only", repeatTo([]byte{magic0, magic1}, n)},
		{"header then a good frame", repeatTo(append(fakeHeader(MaxPayload), good...), n)},
		{"headers with a 1-byte offset", repeatTo(append([]byte{0}, fakeHeader(MaxPayload)...), n)},
	}
	for _, tt := range tests {
		w, _ := decodeWork(tt.stream)
		t.Logf("%s: work %d for %d bytes (plain noise %d): %.2fx", tt.name, w, n, plain, float64(w)/float64(plain))
		if w > 10*plain {
			t.Errorf("%s: decoder work %d is %.0fx that of plain noise (%d), want within 10x", tt.name, w, float64(w)/float64(plain), plain)
		}
	}
}

// A false magic just before a good frame does not hide it (nested resync
// while the credit lasts), and good frames after crafted noise are found.
func TestDecoderResyncFindsFrames(t *testing.T) {
	good := AppendFrame(nil, TStdout, 9, []byte("hello"))
	stream := append(fakeHeader(8), good...) // the fake frame swallows the good one's start
	stream = append(stream, repeatTo(fakeHeader(MaxPayload), 256<<10)...)
	stream = append(stream, good...)
	stream = append(stream, make([]byte, MaxPayload+16)...) // lets the last fake header fail
	stream = append(stream, good...)
	_, frames := decodeWork(stream)
	if frames < 2 {
		t.Fatalf("decoded %d good frames, want at least the first and the last", frames)
	}
}

// FuzzDecoderCost: any pattern repeated over 256 KiB costs the decoder
// within 10x of plain noise.
func FuzzDecoderCost(f *testing.F) {
	f.Add(fakeHeader(MaxPayload))
	f.Add(append([]byte{0}, fakeHeader(100)...))
	f.Add(AppendFrame(fakeHeader(MaxPayload), TPing, 1, nil))
	const n = 256 << 10
	plain := plainWork(n)
	f.Fuzz(func(t *testing.T, unit []byte) {
		if len(unit) == 0 {
			return
		}
		if w, _ := decodeWork(repeatTo(unit, n)); w > 10*plain {
			t.Fatalf("decoder work %d for %d bytes of %x repeated, plain noise %d: over 10x", w, n, unit, plain)
		}
	})
}
