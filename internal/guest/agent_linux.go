package guest

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The agent (cmd/cloonix-agent) runs in three ways:
//   - as PID 1 of the busybox image (RunInit): mounts, reaps orphans,
//     handles poweroff/reboot, and starts itself again as the worker;
//   - as that worker, "--boot" (Boot): modules, eth names, the CD,
//     the console shell, /etc/rc.d, the agent line;
//   - under systemd (debian-frr): "--apply" (ApplyOnce, before the
//     network and FRR start) and "--serve" (Serve).

// GuestEnv is the environment of everything the agent starts.
var GuestEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=vt100",
	"USER=root",
	"LOGNAME=root",
	"SHELL=/bin/sh",
	NoAVXGodebug,
	NoAVXGlibc,
	NoAVXOpenSSL,
}

// UML on hosts whose FPU state does not fit Debian's linux.uml runs with
// xstate switched off (internal/bulk/uml.go): AVX registers are then not
// saved across guest context switches, so everything in the guest avoids
// AVX. Harmless under QEMU.
const (
	NoAVXGodebug = "GODEBUG=cpu.all=off"
	NoAVXGlibc   = "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_Fast_Unaligned_Load,-ERMS,-FSRM"
	// OpenSSL picks its code by CPUID itself, whatever glibc says: its
	// AVX2/AVX-512 bignum and cipher routines had their registers
	// corrupted under UML, so sshd's RSA signatures came out as garbage
	// ("string is too large"). The first word masks CPUID(1) AVX, FMA
	// and F16C; the second CPUID(7) AVX2, every AVX-512 flag, VAES and
	// VPCLMULQDQ (OpenSSL 3's OPENSSL_ia32cap format).
	NoAVXOpenSSL = "OPENSSL_ia32cap=~0x3000100000000000:~0x00005E42DC230020"
)

// Marks in /run (a tmpfs: once per boot) so that a restarted agent does
// not apply the CD or run /etc/rc.d twice.
const (
	appliedMark = "/run/cloonix-applied"
	rcMark      = "/run/cloonix-rc-done"
)

// runRCOnce runs /etc/rc.d/S* unless done since boot.
func runRCOnce() {
	if _, err := os.Stat(rcMark); err == nil {
		return
	}
	RunRC(RCScripts("/etc/rc.d"), os.Stdout, 60*time.Second)
	_ = os.WriteFile(rcMark, nil, 0o644)
}

var logger = log.New(os.Stderr, "cloonix-agent: ", 0)

// logf prints to the console with the guest's uptime, like the kernel.
func logf(format string, a ...any) { logger.Printf("["+uptime()+"] "+format, a...) }

// RunInit is PID 1. It never returns.
func RunInit() {
	if os.Getenv("CLOONIX_MOUNTED") == "" {
		earlyMounts()
	}
	// Under UML (see NoAVXGodebug) run without AVX: the kernel passes
	// GODEBUG from its command line when the machine manager sets it;
	// otherwise start again with it. QEMU guests need not pay the restart.
	if os.Getenv("GODEBUG") != strings.TrimPrefix(NoAVXGodebug, "GODEBUG=") && isUML() {
		env := append([]string{NoAVXGodebug, NoAVXGlibc, "CLOONIX_MOUNTED=1"}, os.Environ()...)
		if err := unix.Exec(os.Args[0], os.Args, env); err != nil {
			logf("re-exec without AVX: %v", err)
		}
	}
	os.Setenv("PATH", strings.TrimPrefix(GuestEnv[0], "PATH="))
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGCHLD)
	// Ctrl-Alt-Del sends SIGINT to init instead of rebooting at once.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	self := "/proc/self/exe"
	if p, err := os.Readlink(self); err == nil {
		self = p
	}
	start := func(mode string) int {
		p, err := os.StartProcess(self, []string{"cloonix-agent", mode}, &os.ProcAttr{
			Env:   GuestEnv,
			Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		})
		if err != nil {
			logf("cannot start the agent: %v", err)
			return -1
		}
		return p.Pid
	}
	worker := start("--boot")
	for sig := range sigs {
		switch sig {
		case unix.SIGCHLD:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
				if pid == worker {
					logf("agent worker ended (%v); restarting it", ws)
					time.Sleep(500 * time.Millisecond)
					worker = start("--boot")
				}
			}
		case unix.SIGTERM, unix.SIGINT:
			shutdown(unix.LINUX_REBOOT_CMD_RESTART)
		case unix.SIGUSR1:
			shutdown(unix.LINUX_REBOOT_CMD_HALT)
		case unix.SIGUSR2:
			shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
	select {}
}

// isUML reports a User-Mode Linux kernel (its /proc/cpuinfo says so).
func isUML() bool {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Contains(string(data), "User Mode Linux")
}

func shutdown(how int) {
	logf("stopping")
	_ = unix.Kill(-1, unix.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	_ = unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	_ = unix.Reboot(how)
	select {}
}

// earlyMounts gives the system its pseudo file systems and a writable /.
func earlyMounts() {
	type m struct{ src, dst, typ, opts string }
	for _, x := range []m{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	} {
		_ = os.MkdirAll(x.dst, 0o755)
		if err := unix.Mount(x.src, x.dst, x.typ, unix.MS_NOSUID, x.opts); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s: %v", x.dst, err)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT, ""); err != nil {
		logf("remount / rw: %v", err)
	}
	for link, target := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		_ = os.Symlink(target, link)
	}
}

// Agent holds the state shared by the boot steps and the line server.
type Agent struct {
	mu     sync.Mutex
	ready  bool
	status string
}

func (a *Agent) setStatus(ready bool, s string) {
	a.mu.Lock()
	a.ready, a.status = ready, s
	a.mu.Unlock()
}

// Ready answers pings.
func (a *Agent) Ready() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready, a.status
}

func readCmdline() Cmdline {
	data, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(data))
}

// Boot is the busybox image's worker: everything but PID 1's duties.
func Boot() error {
	a := &Agent{status: "booting"}
	cl := readCmdline()
	go a.serveLine(cl.Agent)
	logf("worker started")
	if db := openModDB(); db != nil {
		db.coldplug(logf)
		if data, err := os.ReadFile("/etc/modules"); err == nil {
			for _, l := range strings.Split(string(data), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					if _, ok := db.files[modName(l)]; !ok {
						continue // built into this kernel
					}
					if err := db.load(l); err != nil {
						logf("%v", err)
					}
				}
			}
		}
	}
	logf("modules loaded")
	fixEthNames(logf)
	a.setStatus(false, "applying the config CD")
	ready := "ready"
	if err := applyOnce(cl); err != nil {
		logf("%v", err)
		ready = "ready, but " + err.Error()
	}
	logf("config CD done")
	go consoleShell()
	a.setStatus(false, "running /etc/rc.d")
	runRCOnce()
	a.setStatus(true, ready)
	logf("ready")
	select {}
}

func uptime() string {
	data, _ := os.ReadFile("/proc/uptime")
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// ApplyOnce is "cloonix-agent --apply" under systemd: NIC modules (not waiting
// for udev), eth names and the CD.
func ApplyOnce() error {
	cl := readCmdline()
	if db := openModDB(); db != nil {
		db.coldplug(logf)
	}
	fixEthNames(logf)
	return applyOnce(cl)
}

// Serve is "cloonix-agent --serve" under systemd: /etc/rc.d, then ready; the
// line is served from the start.
func Serve() error {
	a := &Agent{status: "running /etc/rc.d"}
	cl := readCmdline()
	go a.serveLine(cl.Agent)
	runRCOnce()
	a.setStatus(true, "ready")
	logf("ready")
	select {}
}

// applyOnce applies the CD unless done since boot (/run is a tmpfs).
func applyOnce(cl Cmdline) error {
	if _, err := os.Stat(appliedMark); err == nil {
		return nil
	}
	defer os.WriteFile(appliedMark, nil, 0o644)
	if cl.CD == "" {
		if cl.Name != "" {
			setHostname(cl.Name)
		}
		return errors.New("no cloonix.cd= on the kernel command line; config CD not applied")
	}
	var c *CDContent
	var err error
	// The CD's driver may still be probing.
	for i := 0; i < 50; i++ {
		if c, err = ReadCD(cl.CD); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	var errs []string
	name := c.Name
	if cl.Name != "" {
		name = cl.Name
	}
	if name != "" {
		setHostname(name)
	}
	if c.Mgmt != "" {
		if err := setMgmtAddr(c.Mgmt); err != nil {
			errs = append(errs, "management address: "+err.Error())
		}
	}
	if err := WriteAuthorizedKey("/", c.SSHKey); err != nil {
		errs = append(errs, "ssh key: "+err.Error())
	}
	if err := RunDeleteCmds(c.DeleteCmds, os.Stdout); err != nil {
		errs = append(errs, err.Error())
	}
	if err := ExtractTrees("/", c.Trees); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("config CD: %s", strings.Join(errs, "; "))
	}
	return nil
}

func setHostname(name string) {
	if err := unix.Sethostname([]byte(name)); err != nil {
		logf("hostname: %v", err)
	}
	_ = os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644)
	hosts, _ := os.ReadFile("/etc/hosts")
	line := "127.0.1.1\t" + name
	var out []string
	found := false
	for _, l := range strings.Split(strings.TrimRight(string(hosts), "\n"), "\n") {
		if strings.HasPrefix(l, "127.0.1.1") {
			l, found = line, true
		}
		if l != "" {
			out = append(out, l)
		}
	}
	if !found {
		if len(out) == 0 {
			out = append(out, "127.0.0.1\tlocalhost")
		}
		out = append(out, line)
	}
	_ = os.WriteFile("/etc/hosts", []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// serveLine serves the agent line, reopening it if it fails.
func (a *Agent) serveLine(dev string) {
	lastErr := ""
	for {
		f, err := openRaw(dev)
		if err != nil {
			if err.Error() != lastErr { // a guest without the line: say it once
				logf("agent line %s: %v", dev, err)
				lastErr = err.Error()
			}
			time.Sleep(time.Second)
			continue
		}
		lastErr = ""
		s := &Server{Ready: a.Ready, Env: GuestEnv, Log: logger}
		err = s.Serve(f)
		f.Close()
		logf("agent line %s: %v; reopening", dev, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// openRaw opens a serial line in raw mode (no echo, no translation) and
// drops what arrived before.
func openRaw(dev string) (*os.File, error) {
	var f *os.File
	var err error
	for i := 0; i < 50; i++ { // the device node may come a little later
		if f, err = os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY, 0); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, err
	}
	// cfmakeraw, 8N1, 115200, no flow control.
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | unix.B115200
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		f.Close()
		return nil, err
	}
	_ = unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
	return f, nil
}

// consoleShell keeps a root shell on the console's real tty.
func consoleShell() {
	dev := "/dev/console"
	if data, err := os.ReadFile("/sys/class/tty/console/active"); err == nil {
		if w := strings.Fields(string(data)); len(w) > 0 {
			dev = "/dev/" + w[len(w)-1]
		}
	}
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		return
	}
	for {
		tty, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			logf("console %s: %v", dev, err)
			return
		}
		cmd := exec.Command(sh, "-l")
		cmd.Env = GuestEnv
		cmd.Dir = "/root"
		if _, err := os.Stat("/root"); err != nil {
			cmd.Dir = "/"
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		start := time.Now()
		if err := cmd.Run(); err != nil && time.Since(start) < time.Second {
			logf("console shell: %v", err)
		}
		tty.Close()
		if time.Since(start) < time.Second {
			time.Sleep(time.Second)
		}
	}
}
