package daemon

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

// Issue 15 (hardening): one test per finding the daemon itself holds.

// TestPreAuthBounds (finding 5): before authentication a client may send
// at most 1 KiB, at most 64 wait at once, and refused ones leave no trace
// in the connection map.
func TestPreAuthBounds(t *testing.T) {
	s := startSwitch(t)
	addr := s.cfg.TCPAddr()
	// Over 1 KiB before auth: closed with a reason, long before the
	// pre-auth deadline.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	dec := proto.NewDecoder(bufio.NewReader(conn))
	if ch, err := dec.Decode(); err != nil || ch.Name != "challenge" {
		t.Fatalf("challenge: %v", err)
	}
	_, _ = conn.Write([]byte(`<auth id="1" hmac="` + strings.Repeat("a", 4096)))
	r, err := dec.Decode()
	if err != nil || proto.ReplyError(r) == nil || !strings.Contains(proto.ReplyError(r).Error(), "bytes before authentication") {
		t.Fatalf("4 KiB before auth: reply %+v %v, want the size refused", r, err)
	}
	conn.Close()

	// Connections closed above leave the map once their goroutines end.
	for s.conns() != 0 {
		time.Sleep(time.Millisecond)
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < maxPending; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		// Reading the challenge proves the switch accepted it.
		if m, err := proto.NewDecoder(bufio.NewReader(c)).Decode(); err != nil || m.Name != "challenge" {
			t.Fatalf("pending client %d: %+v %v", i, m, err)
		}
	}
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		m, err := proto.NewDecoder(bufio.NewReader(c)).Decode()
		c.Close()
		if err != nil || m.Name == "challenge" || proto.ReplyError(m) == nil {
			t.Fatalf("client %d beyond %d pending: %+v %v, want a refusal", maxPending+i, maxPending, m, err)
		}
	}
	if n := s.conns(); n != maxPending {
		t.Fatalf("connection map holds %d, want %d (refused ones must not stay)", n, maxPending)
	}
	// The unix socket is not held up by TCP strangers.
	s.must("ping")
}

func (s *testSwitch) conns() int {
	s.d.subMu.Lock()
	defer s.d.subMu.Unlock()
	return len(s.d.conns)
}

// runCfg runs a daemon on cfg text and returns Run's error (nil when it
// started; it is then stopped).
func runCfg(t *testing.T, dir, extra string) error {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`<cloonix_config>
  <network_name>unit</network_name><work_dir>%s</work_dir><server_name>%s/ctl</server_name>
  <no_nat>true</no_nat><mgmt>off</mgmt>%s
</cloonix_config>`, dir, filepath.Dir(dir), extra)), "test.xml")
	if err != nil {
		t.Fatal(err)
	}
	return runDaemon(cfg)
}

// runDaemon runs a daemon and returns Run's error, or nil once it answered
// (it is then stopped).
func runDaemon(cfg *config.Config) error {
	d := New(cfg)
	ran := make(chan error, 1)
	go func() { ran <- d.Run() }()
	for {
		select {
		case err := <-ran:
			return err
		default:
		}
		if c, err := proto.Dial("unix:"+cfg.ServerName, ""); err == nil {
			c.Close()
			d.Stop()
			return <-ran
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTCPNeedsPassword (finding 4): with an empty or short password TCP
// control stays off (with a warning), so no HMAC keyed with nothing is
// ever accepted.
func TestTCPNeedsPassword(t *testing.T) {
	for _, pw := range []string{"", "<password></password>", "<password>short</password>"} {
		dir := filepath.Join(t.TempDir(), "w")
		port := freeTCP(t)
		cfg, err := config.Parse([]byte(fmt.Sprintf(`<cloonix_config>
  <network_name>unit</network_name><work_dir>%s</work_dir><server_name>%s/ctl</server_name>
  <no_nat>true</no_nat><mgmt>off</mgmt><server_port>%d</server_port>%s
</cloonix_config>`, dir, filepath.Dir(dir), port, pw)), "test.xml")
		if err != nil {
			t.Fatal(err)
		}
		if w := cfg.TCPWarning(); !strings.Contains(w, "stays off") {
			t.Errorf("config %q: warning %q", pw, w)
		}
		d := New(cfg)
		ran := make(chan error, 1)
		go func() { ran <- d.Run() }()
		for {
			c, err := proto.Dial("unix:"+cfg.ServerName, "")
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-ran:
				t.Fatalf("config %q: %v", pw, err)
			default:
			}
			time.Sleep(10 * time.Millisecond)
		}
		if c, err := proto.Dial(fmt.Sprintf("tcp:127.0.0.1:%d", port), ""); err == nil {
			c.Close()
			t.Errorf("config %q: TCP control accepted an empty key", pw)
		} else if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Errorf("config %q: TCP control listens", pw)
		}
		d.Stop()
		<-ran
	}
}

// TestWorkDirPrivate (findings 2 and 8): a work_dir made by someone else,
// open to others or a symlink is refused; a planted symlink in it is not
// followed; a second switch on it gets a clear error.
func TestWorkDirPrivate(t *testing.T) {
	off := "<server_port>-1</server_port>"
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(open, 0o777)
	if err := runCfg(t, open, off); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable work_dir: %v", err)
	}
	other := filepath.Join(base, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 65534, 65534); err == nil {
		if err := runCfg(t, other, off); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("work_dir of another user: %v", err)
		}
	}
	link := filepath.Join(base, "link")
	_ = os.Symlink(t.TempDir(), link)
	if err := runCfg(t, link, off); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked work_dir: %v", err)
	}
	// A symlink planted as switch.pid: the switch refuses, the target is
	// untouched.
	wd := filepath.Join(base, "wd")
	if err := os.Mkdir(wd, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(base, "victim")
	_ = os.WriteFile(victim, []byte("keep"), 0o600)
	_ = os.Symlink(victim, filepath.Join(wd, "switch.pid"))
	if err := runCfg(t, wd, off); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("planted switch.pid symlink: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the switch wrote through a planted symlink: %q", b)
	}
	// A fresh default-style work_dir is created 0700.
	fresh := filepath.Join(base, "a", "b")
	if err := runCfg(t, fresh, off); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("new work_dir mode %v %v, want 0700", fi.Mode(), err)
	}
}

// TestWorkDirLock (finding 8): two switches with different sockets on one
// work_dir: the second is refused and the first keeps its pid file.
func TestWorkDirLock(t *testing.T) {
	s := startSwitch(t)
	cfg := *s.cfg
	cfg.ServerName = filepath.Join(t.TempDir(), "other.sock")
	cfg.ServerPort = -1
	err := runDaemon(&cfg)
	if err == nil || !strings.Contains(err.Error(), "in use by another switch") {
		t.Fatalf("second switch on one work_dir: %v", err)
	}
	if b, _ := os.ReadFile(s.cfg.PidFile()); strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("pid file overwritten: %q", b)
	}
	s.must("ping")
}

// TestUmaskZero (finding 7): under umask 000 every path the switch
// creates is private: sockets 0600 (or 0700), files 0600, dirs 0700.
func TestUmaskZero(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s := startSwitch(t)
	s.must("add_lan", "name", "l1")
	s.must("add_port", "name", "p1")
	s.must("attach", "port", "p1", "lan", "l1")
	checkPrivateTree(t, s.cfg.WorkDir)
}

// checkPrivateTree fails for any path under dir that group or others may
// use.
func checkPrivateTree(t *testing.T, dir string) {
	t.Helper()
	n := 0
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		n++
		if fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want nothing for group and others", p, fi.Mode())
		}
		return nil
	})
	if n < 3 {
		t.Fatalf("only %d paths under %s: the check saw nothing", n, dir)
	}
}
