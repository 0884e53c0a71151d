package cnt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/cmdout"
)

// The runtime exits once a node's init (or a detached console shell)
// runs, leaving it to the nearest subreaper, or to the host's pid 1 —
// which on some hosts (this one) never reaps. So the process that starts
// nodes becomes a child subreaper and reaps the processes it knows of
// (reap below); it never waits for any other.
var subreaper sync.Once

func becomeSubreaper() {
	subreaper.Do(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
}

// reap collects the exit of pid, which has exited, if it is our child:
// its exit code (128+signal when killed, as shells say) and how it
// ended; ok is false when it is not ours.
func reap(pid int) (code int, how string, ok bool) {
	var ws unix.WaitStatus
	if n, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || n != pid {
		return -1, "", false
	}
	switch {
	case ws.Exited():
		return ws.ExitStatus(), fmt.Sprintf("exit status %d", ws.ExitStatus()), true
	case ws.Signaled():
		return 128 + int(ws.Signal()), "killed by " + unix.SignalName(ws.Signal()), true
	}
	return -1, "", false
}

// waitExit blocks until the process behind pidfd exits (a pidfd turns
// readable then), in the runtime's poller, or ctx ends (false).
func waitExit(ctx context.Context, pidfd int) bool {
	dup, err := unix.Dup(pidfd)
	if err != nil {
		return false
	}
	_ = unix.SetNonblock(dup, true)
	f := os.NewFile(uintptr(dup), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	return rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(p, 0)
		return n > 0
	}) == nil
}

// outputGrace is how long Exec waits, once the command exited, for the
// rest of its output: background children may keep it open (as a VM's
// agent does).
const outputGrace = 500 * time.Millisecond

// Exec runs argv in the node through the runtime: stdin (may be nil)
// feeds it, its output goes to stdout and stderr (nil: discarded), and its
// exit code is returned. An error means it could not run (node gone,
// runtime failed, no such program). The runtime runs it detached and
// exits; the command, reparented to this process (a subreaper), is
// waited for here, so processes it leaves in the background do not hold
// Exec.
func (c *Container) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return -1, errors.New("exec: no command")
	}
	select {
	case <-c.done:
		return -1, fmt.Errorf("node %s is not running (%s)", c.Name, c.Reason())
	default:
	}
	c.mu.Lock()
	c.execN++
	n := c.execN
	c.mu.Unlock()
	pidf := c.path("exec-" + strconv.Itoa(n) + ".pid")
	rlog := c.path("exec-" + strconv.Itoa(n) + ".log")
	defer os.Remove(pidf)
	defer os.Remove(rlog)
	cmd := c.Runtime.command(ctx, rlog, append([]string{"exec", "--detach", "--pid-file", pidf, c.Name}, argv...)...)
	// Pipes of our own: the command's output is read until it exits
	// (plus outputGrace), not until every holder closes it.
	readers, writers, copies, err := outputPipes(stdout, stderr)
	if err != nil {
		return -1, err
	}
	defer func() { closeAll(writers) }()
	defer func() {
		closeAll(readers)
		copies.Wait()
	}()
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	if stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		writers = append(writers, r)
		cmd.Stdin = r
		go func() {
			_, _ = io.Copy(w, stdin)
			w.Close()
		}()
	}
	if err := cmd.Run(); err != nil {
		msg := logTail(rlog)
		if msg == "" {
			msg = err.Error()
		}
		return -1, fmt.Errorf("exec in node %s: %s", c.Name, msg)
	}
	closeAll(writers)
	writers = nil
	b, err := os.ReadFile(pidf)
	pid := 0
	if err == nil {
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var pidfd int
	if err == nil {
		pidfd, err = unix.PidfdOpen(pid, 0)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in node %s: the runtime's pid file: %v", c.Name, err)
	}
	defer unix.Close(pidfd)
	if !waitExit(ctx, pidfd) {
		_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		waitExit(context.Background(), pidfd)
	}
	code, _, ok := reap(pid)
	if !ok {
		return -1, fmt.Errorf("exec in node %s: could not collect the command's exit status", c.Name)
	}
	// The rest of the output, for a moment: the copies end at EOF, or
	// when the readers are closed.
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputGrace):
	}
	return code, ctx.Err()
}

// outputPipes makes a pipe per writer (nil: discard) and copies from
// each to its writer until the pipe ends.
func outputPipes(ws ...io.Writer) (readers, writers []*os.File, copies *sync.WaitGroup, err error) {
	copies = &sync.WaitGroup{}
	var mu sync.Mutex // callers often give one writer for both
	for _, w := range ws {
		r, pw, err := os.Pipe()
		if err != nil {
			closeAll(readers)
			closeAll(writers)
			return nil, nil, nil, err
		}
		if w == nil {
			w = io.Discard
		}
		readers, writers = append(readers, r), append(writers, pw)
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(lockedWriter{&mu, w}, r)
		}()
	}
	return readers, writers, copies, nil
}

// lockedWriter serializes writes (and hides any ReadFrom of w, which is
// not safe to run twice at once on one writer).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Console is a shell on a pty in the node: read its output, write its
// input. Close ends the shell.
type Console struct {
	*os.File   // the pty's master side
	pid, pidfd int
	once       sync.Once
}

// Close closes the pty and kills the shell.
func (k *Console) Close() error {
	var err error
	k.once.Do(func() {
		err = k.File.Close()
		_ = unix.PidfdSendSignal(k.pidfd, unix.SIGKILL, nil, 0)
		waitExit(context.Background(), k.pidfd)
		reap(k.pid)
		unix.Close(k.pidfd)
	})
	return err
}

// Console starts a login shell on a new pty in the node (the runtime's
// exec -t, its pty handed over a console socket).
func (c *Container) Console(ctx context.Context) (*Console, error) {
	select {
	case <-c.done:
		return nil, fmt.Errorf("node %s is not running (%s)", c.Name, c.Reason())
	default:
	}
	becomeSubreaper()
	// A short socket path: unix socket names are at most 107 bytes.
	tmp, err := os.MkdirTemp("", "cnt-console-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	got := make(chan *os.File, 1)
	go func() { got <- recvPty(l) }()
	pidf := filepath.Join(tmp, "pid")
	rlog := filepath.Join(tmp, "log")
	shell := "/bin/sh"
	if p, err := resolveIn(c.path("rootfs"), "bin/bash"); err == nil {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			shell = "/bin/bash"
		}
	}
	cmd := c.Runtime.command(ctx, rlog, "exec", "-t", "--detach", "--console-socket", sock, "--pid-file", pidf, "--env", "TERM=xterm", c.Name, shell, "-l")
	if out, err := cmd.CombinedOutput(); err != nil {
		l.Close()
		if f := <-got; f != nil {
			f.Close()
		}
		msg := logTail(rlog)
		if msg == "" {
			msg = strings.TrimSpace(cmdout.Tail(out, 3))
		}
		return nil, fmt.Errorf("console of node %s: %s", c.Name, msg)
	}
	master := <-got
	b, err := os.ReadFile(pidf)
	var pid int
	if err == nil {
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var pidfd int
	if err == nil {
		pidfd, err = unix.PidfdOpen(pid, 0)
	}
	if err != nil || master == nil {
		if master != nil {
			master.Close()
		}
		return nil, fmt.Errorf("console of node %s: the shell did not start (%v)", c.Name, err)
	}
	return &Console{File: master, pid: pid, pidfd: pidfd}, nil
}

// recvPty accepts the runtime's connection and takes the pty master it
// sends (SCM_RIGHTS); nil when none comes.
func recvPty(l *net.UnixListener) *os.File {
	conn, err := l.AcceptUnix()
	if err != nil {
		return nil
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	unix.CloseOnExec(fds[0])
	_ = unix.SetNonblock(fds[0], true)
	return os.NewFile(uintptr(fds[0]), "pty")
}
