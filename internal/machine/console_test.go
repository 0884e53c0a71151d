package machine

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConsoleRelay(t *testing.T) {
	dir := t.TempDir()
	host, guestSide := net.Pipe()
	c := NewConsole(filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log"))
	c.Attach(host)
	// Output before any client is replayed to the first one.
	go guestSide.Write([]byte("boot messages\r\n"))
	time.Sleep(50 * time.Millisecond)
	cl, err := net.Dial("unix", filepath.Join(dir, "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf := make([]byte, 100)
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(cl, buf, len("boot messages\r\n"))
	if err != nil || !bytes.Contains(buf[:n], []byte("boot messages")) {
		t.Fatalf("replay: %q %v", buf[:n], err)
	}
	// Input goes to the guest.
	go cl.Write([]byte("ls\n"))
	guestSide.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err = guestSide.Read(buf)
	if err != nil || string(buf[:n]) != "ls\n" {
		t.Fatalf("input: %q %v", buf[:n], err)
	}
	// Live output reaches the client.
	go guestSide.Write([]byte("live\n"))
	n, err = cl.Read(buf)
	if err != nil || string(buf[:n]) != "live\n" {
		t.Fatalf("live: %q %v", buf[:n], err)
	}
	c.Close()
	if _, err := cl.Read(buf); err == nil {
		t.Fatal("client still connected after Close")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	if !strings.Contains(string(b), "boot messages") || !strings.Contains(string(b), "live") {
		t.Fatalf("log: %q", b)
	}
}
