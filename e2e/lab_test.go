// Package e2e drives the real cloonix binary as a user would: start a
// switch with its own config, issue ctrl/fconf/exec commands, boot real
// guests. `make test` runs it with CLOONIX_E2E=1 after building the
// images; without that variable the tests refuse to run rather than
// pretend (go test ./... alone runs the unit tests only).
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloonix/internal/proto"
)

var (
	bin     string // the cloonix binary under test
	bulkDir string // built images (CLOONIX_BULK, default ~/cloonix_labs/bulk)
)

// e2e tells whether the end-to-end tests run (CLOONIX_E2E set).
var e2e = os.Getenv("CLOONIX_E2E") != ""

// needE2E skips a test unless CLOONIX_E2E is set, so `go test ./...`
// reports the end-to-end tests as skipped, never as passed, without it.
func needE2E(t *testing.T) {
	t.Helper()
	if !e2e {
		t.Skip("end-to-end test: set CLOONIX_E2E=1 (make test does) to run it")
	}
}

func TestMain(m *testing.M) {
	if !e2e {
		os.Exit(m.Run()) // every test skips (needE2E)
	}
	dir, err := os.MkdirTemp("", "cloonix-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "cloonix")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/cloonix").CombinedOutput()
	if err != nil {
		fmt.Printf("building cloonix: %v\n%s", err, out)
		os.Exit(1)
	}
	bulkDir = os.Getenv("CLOONIX_BULK")
	if bulkDir == "" {
		home, _ := os.UserHomeDir()
		bulkDir = filepath.Join(home, "cloonix_labs", "bulk")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Lab is one switch started for a test, with its own config and work_dir.
type Lab struct {
	t       *testing.T
	Dir     string // work_dir
	Config  string // config file path
	Sock    string // unix control socket
	TCPPort int
	Pass    string
}

// freePort returns a TCP port free on loopback now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewLab starts a switch for t; it is stopped when t ends. extra is raw
// XML added to the config (e.g. "<no_nat>true</no_nat>").
func NewLab(t *testing.T, extra string) *Lab {
	needE2E(t)
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "clx")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(extra, "<mgmt>") {
		// Switches side by side would each claim the default management
		// network: the tests that use it name their own.
		extra += "<mgmt>off</mgmt>"
	}
	l := &Lab{t: t, Dir: dir, Config: filepath.Join(dir, "config.xml"), Sock: filepath.Join(dir, "ctl.sock"), TCPPort: freePort(t), Pass: "e2e-" + filepath.Base(dir)}
	cfg := fmt.Sprintf(`<cloonix_config>
  <network_name>e2e-%s</network_name>
  <server_name>%s</server_name>
  <server_port>%d</server_port>
  <password>%s</password>
  <work_dir>%s</work_dir>
  <bulk_dir>%s</bulk_dir>
  %s
</cloonix_config>
`, t.Name(), l.Sock, l.TCPPort, l.Pass, dir, bulkDir, extra)
	if err := os.WriteFile(l.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l.MustRun("start")
	t.Cleanup(func() {
		if t.Failed() {
			l.logConsoles() // before stop, which removes the guests' dirs
		}
		out, err := l.Run("stop")
		if err != nil {
			t.Logf("stop: %v %s", err, out)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "switch.log")); err == nil {
				t.Logf("switch.log:\n%s", lastLines(string(b), 60))
			}
		}
		os.RemoveAll(dir)
	})
	return l
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs `cloonix -c CONFIG args...` and returns stdout+stderr.
func (l *Lab) Run(args ...string) (string, error) {
	return l.RunTimeout(5*time.Minute, args...)
}

// RunTimeout is Run with a deadline.
func (l *Lab) RunTimeout(d time.Duration, args ...string) (string, error) {
	cmd := exec.Command(bin, append([]string{"-c", l.Config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("cloonix %s: timed out after %v", strings.Join(args, " "), d)
	}
}

// MustRun fails the test when the command fails.
func (l *Lab) MustRun(args ...string) string {
	l.t.Helper()
	out, err := l.Run(args...)
	if err != nil {
		l.t.Fatalf("cloonix %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// List returns `ctrl list --json`.
func (l *Lab) List() *proto.Lab {
	l.t.Helper()
	out := l.MustRun("ctrl", "list", "--json")
	lab := &proto.Lab{}
	if err := json.Unmarshal([]byte(out), lab); err != nil {
		l.t.Fatalf("ctrl list --json: %v\n%s", err, out)
	}
	return lab
}

// Client dials the lab's control socket.
func (l *Lab) Client() *proto.Client {
	l.t.Helper()
	c, err := proto.Dial("unix:"+l.Sock, "")
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return c
}

// Eventually retries f until it returns nil or d passes.
func Eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %v: %v", what, d, err)
}
