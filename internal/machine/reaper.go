package machine

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// The reaper makes sure no guest process outlives a switch that dies
// (kill -9 included). Pdeathsig kills each guest's main process, but
// UML's own helper processes (its I/O threads) have no parent death
// signal and are re-parented to init. The reaper is a small process of
// its own session that the switch tells, over a pipe, which process
// groups are its guests'; when the pipe reaches end of file (the switch
// is gone, whatever the cause) it kills those groups and exits.

// startLocked runs cmd.Start on one thread that lives as long as the
// switch: Pdeathsig fires when the thread that forked the child ends, so
// it must never be a thread the Go runtime might retire.
func startLocked(cmd *exec.Cmd) error {
	done := make(chan error)
	spawnCh <- func() { done <- cmd.Start() }
	return <-done
}

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

var reaper struct {
	mu sync.Mutex
	w  *os.File
}

// StartReaper launches argv (the `cloonix reaper` command) with the read
// end of the pipe as its standard input.
func StartReaper(argv []string) error {
	r, w, err := os.Pipe() // close-on-exec: guests never hold the write end
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = r
	// Its own session: signals to the switch's group leave it alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("starting the reaper: %v", err)
	}
	r.Close()
	go func() { _ = cmd.Wait() }()
	reaper.mu.Lock()
	reaper.w = w
	reaper.mu.Unlock()
	return nil
}

// StopReaper closes the pipe after a clean shutdown (no group is left
// to kill by then).
func StopReaper() {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.w != nil {
		reaper.w.Close()
		reaper.w = nil
	}
}

// ReaperAdd and ReaperRemove list a process group of another kind's
// guest (a container node's init) with the reaper.
func ReaperAdd(pgid int)    { reaperTell('+', pgid) }
func ReaperRemove(pgid int) { reaperTell('-', pgid) }

// reaperTell reports a guest process group born (+) or gone (-).
func reaperTell(op byte, pgid int) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.w != nil {
		_, _ = fmt.Fprintf(reaper.w, "%c%d\n", op, pgid)
	}
}

// RunReaper is the reaper process: it reads +PGID and -PGID lines until
// end of file, then kills every group still listed.
func RunReaper(in io.Reader) {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	groups := map[int]bool{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		l := sc.Text()
		if len(l) < 2 {
			continue
		}
		pg, err := strconv.Atoi(l[1:])
		if err != nil || pg <= 1 {
			continue
		}
		switch l[0] {
		case '+':
			groups[pg] = true
		case '-':
			delete(groups, pg)
		}
	}
	for pg := range groups {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
}
