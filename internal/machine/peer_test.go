package machine

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPeerConnect is not a test: it is the racer of TestAcceptOnlyEmulator,
// run as a child process.
func TestPeerConnect(t *testing.T) {
	path := os.Getenv("CLOONIX_TEST_PEER_SOCK")
	if path == "" {
		t.Skip("helper of TestAcceptOnlyEmulator")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		os.Exit(2)
	}
	os.Stdout.WriteString("connected\n")
	_, _ = io.Copy(io.Discard, c) // until the switch closes it
	os.Stdout.WriteString("closed\n")
	os.Exit(0)
}

// TestAcceptOnlyEmulator (issue 15, finding 7): a console/agent socket
// turns away a process that connects before the emulator.
func TestAcceptOnlyEmulator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "con.sock")
	l, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	racer := exec.Command(os.Args[0], "-test.run=^TestPeerConnect$")
	racer.Env = append(os.Environ(), "CLOONIX_TEST_PEER_SOCK="+path)
	out, _ := racer.StdoutPipe()
	if err := racer.Start(); err != nil {
		t.Fatal(err)
	}
	defer racer.Process.Kill()
	rd := bufio.NewReader(out)
	if line, _ := rd.ReadString('\n'); line != "connected\n" {
		t.Fatalf("racer: %q", line)
	}
	got := make(chan net.Conn, 1)
	go func() {
		c, err := acceptOne(context.Background(), l, os.Getpid())
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	// The expected process connects second and gets the line...
	me, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer me.Close()
	c := <-got
	if c == nil {
		t.Fatal("no connection accepted")
	}
	defer c.Close()
	if pid := peerPid(c.(*net.UnixConn)); pid != os.Getpid() {
		t.Fatalf("accepted pid %d (the racer is %d), want %d", pid, racer.Process.Pid, os.Getpid())
	}
	// ...and the racer was turned away.
	if line, _ := rd.ReadString('\n'); line != "closed\n" {
		t.Fatalf("racer after accept: %q", line)
	}
	_ = racer.Wait()
}
