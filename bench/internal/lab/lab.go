// Package lab starts a private cloonix switch for a benchmark (a fresh
// static binary, its own work_dir and config) and measures its guests:
// memory (PSS of each guest's process group) and CPU time.
package lab

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"cloonix/bench/internal/hostsh"
	"cloonix/internal/proto"
)

// Build compiles cloonix (static, as the agent in images is) into dir.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "cloonix")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cloonix")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cloonix: %v\n%s", err, out)
	}
	return bin, nil
}

// Binary is bin when given (a -bin flag), else a fresh build in a new
// temporary directory; done removes that directory. A failed build
// undoes what hostsh did and exits.
func Binary(bin string) (path string, done func()) {
	if bin != "" {
		return bin, func() {}
	}
	dir, err := os.MkdirTemp("", "clxbin")
	if err != nil {
		hostsh.Fail(err)
	}
	if path, err = Build(dir); err != nil {
		os.RemoveAll(dir)
		hostsh.Fail(err)
	}
	return path, func() { os.RemoveAll(dir) }
}

// Bulk is the images directory: flag value, else $CLOONIX_BULK, else
// ~/cloonix_labs/bulk.
func Bulk(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if b := os.Getenv("CLOONIX_BULK"); b != "" {
		return b
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, "cloonix_labs", "bulk")
}

// Switch is a running private switch.
type Switch struct {
	Bin, Dir, Cfg, Sock string
	// Env is added to the switch's environment (e.g. PATH for a
	// wrapped emulator).
	Env []string
}

// Config is a private switch's config: no NAT, and no management
// network unless Mgmt (two switches would claim the default one).
type Config struct {
	Name string // network_name
	Dir  string // work_dir, which holds the control socket ctl.sock and the config file
	Bulk string // bulk_dir; "" for the switch's default
	Mgmt bool
	// MgmtNet is the management network when Mgmt (the switch's default
	// when ""): a second switch with one needs another.
	MgmtNet string
}

// Write writes the config into Dir/config.xml (the control port one free
// on loopback now) and returns that file.
func (c Config) Write() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var opt strings.Builder
	if c.Bulk != "" {
		fmt.Fprintf(&opt, "<bulk_dir>%s</bulk_dir>", c.Bulk)
	}
	switch {
	case !c.Mgmt:
		opt.WriteString("<mgmt>off</mgmt>")
	case c.MgmtNet != "":
		fmt.Fprintf(&opt, "<mgmt>%s</mgmt>", c.MgmtNet)
	}
	path := filepath.Join(c.Dir, "config.xml")
	cfg := fmt.Sprintf(`<cloonix_config><network_name>%s</network_name>
<server_name>%s</server_name><server_port>%d</server_port><password>bench-%d</password>
<work_dir>%s</work_dir><no_nat>true</no_nat>%s</cloonix_config>
`, c.Name, filepath.Join(c.Dir, "ctl.sock"), port, os.Getpid(), c.Dir, opt.String())
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// Start writes a config under dir (work_dir dir, images from bulk, no
// default slirp) and starts the switch.
func Start(bin, dir, bulk, name string, env ...string) (*Switch, error) {
	cfg, err := Config{Name: name, Dir: dir, Bulk: bulk}.Write()
	if err != nil {
		return nil, err
	}
	s := &Switch{Bin: bin, Dir: dir, Cfg: cfg, Sock: filepath.Join(dir, "ctl.sock"), Env: env}
	if _, err := s.Run("start"); err != nil {
		return nil, err
	}
	return s, nil
}

// StartSh starts a switch of config c in a new directory under /tmp (c.Dir
// is set to it) by a shell command after prefix (e.g. "ip netns exec NS
// "), through hostsh: Cleanup stops it and removes the directory; a
// failure undoes everything and exits. It returns the command that
// reaches the switch ("BIN -c CONFIG") and the directory.
func StartSh(bin, prefix string, c Config) (cmd, dir string) {
	dir, err := os.MkdirTemp("/tmp", "clxbench")
	if err != nil {
		hostsh.Fail(err)
	}
	c.Dir = dir
	cfg, err := c.Write()
	if err != nil {
		hostsh.Fail(err)
	}
	cmd = bin + " -c " + cfg
	hostsh.Undo("rm -rf "+dir, cmd+" stop")
	hostsh.Must(prefix + cmd + " start")
	return cmd, dir
}

// Run runs `cloonix -c CFG args...` and returns its output.
func (s *Switch) Run(args ...string) (string, error) {
	cmd := exec.Command(s.Bin, append([]string{"-c", s.Cfg}, args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cloonix %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Exec runs a shell command line in guest vm through its agent.
func (s *Switch) Exec(vm, cmdline string) (string, error) {
	return s.Run("exec", vm, "--", "sh", "-c", cmdline)
}

// Stop stops the switch and its guests.
func (s *Switch) Stop() { _, _ = s.Run("stop") }

// Client is a control connection (one per goroutine that waits: the
// switch answers one connection's requests in order).
func (s *Switch) Client() (*proto.Client, error) { return proto.Dial("unix:"+s.Sock, "") }

// Pid is the switch's process id.
func (s *Switch) Pid() int {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "switch.pid"))
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// group lists the processes of process group pgid (a guest's: the
// machine manager starts each emulator in its own group).
func group(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var ps []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(p); err == nil && g == pgid {
			ps = append(ps, p)
		}
	}
	return ps
}

// GuestMemMB is the proportional set size (MB) of a guest's process
// group: UML runs one host process per guest address space sharing its
// memory file, so PSS rather than RSS, each address space counted once.
func GuestMemMB(pid int) float64 {
	var kb float64
	var seen []int
	for _, p := range group(pid) {
		dup := false
		for _, q := range seen {
			dup = dup || sameVM(p, q)
		}
		if dup {
			continue
		}
		seen = append(seen, p)
		kb += PSSKB(p)
	}
	return kb / 1024
}

// PSSKB is a process's proportional set size (kB).
func PSSKB(pid int) float64 { return procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:") }

// GuestCPU is the CPU seconds (user + system) a guest has used: its
// process group's live processes plus the children they reaped (UML's
// per-address-space processes that already exited).
func GuestCPU(pid int) float64 {
	tick := 100.0 // USER_HZ on Linux
	var t float64
	for _, p := range group(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces).
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
	}
	return t / tick
}

// sameVM tells whether two processes share one address space (kcmp).
func sameVM(a, b int) bool {
	const sysKcmp, kcmpVM = 312, 1
	r, _, e := syscall.Syscall6(sysKcmp, uintptr(a), uintptr(b), kcmpVM, 0, 0, 0)
	return e == 0 && r == 0
}

// RSSMB is a process's resident set (MB).
func RSSMB(pid int) float64 { return procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") / 1024 }

func procField(path, key string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), key) {
			v, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return v
		}
	}
	return 0
}
