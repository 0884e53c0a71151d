package tux

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
)

// spawnCh runs cmd.Start on one thread that lives as long as the switch:
// Pdeathsig fires when the thread that forked the child ends, so it must
// never be a thread the Go runtime might retire.
var spawnCh = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
}()

func spawn(cmd *exec.Cmd) error {
	done := make(chan error)
	spawnCh <- func() { done <- cmd.Start() }
	return <-done
}

// proc is one started helper process with its three channels.
type proc struct {
	cmd    *exec.Cmd
	sock   *os.File // the switch's end of the socketpair
	stdin  *os.File
	stdout *os.File
	log    string
}

// startProc runs `cloonix tux-helper KIND ARGS...` with its switch
// socket on fd 3 (and held, if any, on fd 4), its stderr appended to
// log, and Pdeathsig so that it dies with the switch.
func startProc(kind string, args, env []string, held *os.File, log string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1<<20)
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1<<20)
	}
	p := &proc{sock: os.NewFile(uintptr(fds[0]), "switch"), log: log}
	theirs := os.NewFile(uintptr(fds[1]), "helper")
	defer theirs.Close()
	argv := append([]string{"tux-helper", kind}, args...)
	files := []*os.File{theirs}
	if held != nil {
		argv = append(argv, "--held")
		files = append(files, held)
	}
	cmd := exec.Command(self, argv...)
	cmd.Env = append(append(os.Environ(), env...), "GOMAXPROCS=1")
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		p.sock.Close()
		return nil, fmt.Errorf("work_dir: %v", err)
	}
	lf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.sock.Close()
		return nil, err
	}
	defer lf.Close()
	cmd.Stderr = lf
	// Our own pipes, not StdoutPipe: Wait (which runs at once) would
	// close that one and lose the helper's last words.
	inR, inW, err := os.Pipe()
	if err != nil {
		p.sock.Close()
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		p.sock.Close()
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = spawn(cmd)
	inR.Close()
	outW.Close()
	if err != nil {
		p.sock.Close()
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting its helper: %v", err)
	}
	p.cmd, p.stdin, p.stdout = cmd, inW, outR
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) kill() { _ = p.cmd.Process.Kill() }
