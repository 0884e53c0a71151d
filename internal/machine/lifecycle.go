package machine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// Lifecycle of a guest beyond start and kill (DESIGN section 10): a
// clean stop that keeps the disk, a start from that disk, snapshots of
// the disk and the carrier of its eths. Each kind implements its part:
// Guest.Shutdown and Guest.SetLink, Kind.SaveDisk, and Start honours
// Spec.KeepDisk.

// ErrNoCarrier is returned by SetLink when the kind cannot show the guest
// a carrier change (UML's vector transport has no link state): the switch
// still stops the eth's frames both ways.
var ErrNoCarrier = errors.New("this kind of guest cannot see carrier changes")

// ShutdownTimeout is how long a clean power-off may take before the guest
// is stopped hard.
const ShutdownTimeout = 20 * time.Second

// powerOff asks the guest's init to power off, after syncing its disks:
// busybox's poweroff signals our init (SIGUSR2), systemd's does its own;
// kill -USR2 1 is the fallback for an init we made.
var powerOff = []string{"sh", "-c", "sync; (poweroff || kill -USR2 1) >/dev/null 2>&1 &"}

// Shutdown powers the guest off through its agent and waits up to d for
// it to exit; then the kind's hard stop (QEMU: QMP quit, which flushes
// its disk) and at last SIGKILL. The disk in Dir is kept. A guest that is
// gone already is left alone.
func (m *Machine) Shutdown(d time.Duration) {
	select {
	case <-m.exited:
		return
	default:
	}
	m.mu.Lock()
	m.stopping = true
	agent, st := m.agent, m.state
	m.mu.Unlock()
	if st == Running && agent != nil {
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		_, _, _, _ = agent.Exec(ctx, powerOff, nil)
		cancel()
		select {
		case <-m.exited:
			return
		case <-time.After(d):
		}
	} // else no agent to ask (still booting): stop it hard at once
	if m.hardStop != nil {
		log.Printf("vm %s: stopping it hard (no clean power-off within %v)", m.Name, d)
		m.hardStop()
		select {
		case <-m.exited:
			return
		case <-time.After(5 * time.Second):
		}
	}
	log.Printf("vm %s did not stop; killing it", m.Name)
	m.Stop()
}

// SetLink sets the carrier the guest sees on eth: QEMU through QMP
// set_link on its NIC; other kinds return ErrNoCarrier.
func (m *Machine) SetLink(eth int, up bool) error {
	if eth < 0 || eth >= len(m.EthSocks) {
		return fmt.Errorf("vm %s has no eth%d", m.Name, eth)
	}
	if m.qmpSock == "" {
		return ErrNoCarrier
	}
	if st, _ := m.State(); st == Stopped || st == Crashed {
		return nil // applied at the next start (Spec.LinkDown)
	}
	return m.qmp("set_link", map[string]any{"name": fmt.Sprintf("nic%d", eth), "up": up})
}

// qmp runs one QMP command on this QEMU guest.
func (m *Machine) qmp(cmd string, args any) error {
	m.qmpMu.Lock()
	defer m.qmpMu.Unlock()
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	for {
		err := qmpCall(ctx, m.qmpSock, cmd, args)
		// A QEMU just started may not listen yet.
		if err == nil || !(errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// syncGuest flushes the guest's page cache to its disk through the agent
// (a guest without an answering agent is saved as its disk is).
func syncGuest(g Guest) {
	if st, _ := g.State(); st != Running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := g.Exec(ctx, []string{"sync"}, nil); err != nil {
		log.Printf("save: sync in the guest: %v", err)
	}
}

// SaveDisk of a QEMU guest: its overlay over the image, converted to a
// standalone qcow2 (a bare filesystem stays one; ResolveImage tells them
// apart). A running guest is synced, then paused for the copy.
func (QEMUKind) SaveDisk(s *Spec, g Guest, dst string, progress func(done, total int64)) error {
	if m, ok := g.(*Machine); ok && m != nil {
		if st, _ := m.State(); st == Running || st == Booting {
			syncGuest(m)
			if err := m.qmp("stop", nil); err != nil {
				return fmt.Errorf("pausing vm %s: %v", s.Name, err)
			}
			defer func() {
				if err := m.qmp("cont", nil); err != nil {
					log.Printf("vm %s: resuming after save: %v", s.Name, err)
				}
			}()
		}
	}
	if !fileExists(s.OverlayPath()) { // never started: the image as it is
		return qemuImgConvert(s.QemuImg, []string{"convert", "-p", "-U", "-O", "qcow2", s.Image.Path, dst}, progress)
	}
	// No locking: a running QEMU holds the overlay (it is paused), UML
	// guests hold a whole-file lock on a shared reference image; both
	// are only read here.
	src := "driver=qcow2,file.driver=file,file.filename=" + qemuEscape(s.OverlayPath()) + ",file.locking=off,backing.file.locking=off"
	return qemuImgConvert(s.QemuImg, []string{"convert", "-p", "-O", "qcow2", "--image-opts", src, dst}, progress)
}

// SaveDisk of a UML guest: its COW file merged over the image into a raw
// filesystem image. A running guest is synced first (UML cannot be paused
// safely from outside: its processes are ptraced by the kernel process).
func (UMLKind) SaveDisk(s *Spec, g Guest, dst string, progress func(done, total int64)) error {
	if g != nil {
		syncGuest(g)
	}
	if _, err := os.Stat(s.OverlayPath()); err != nil {
		// Never booted far enough to write: the image as it is.
		return copyFile(s.Image.Path, dst, progress)
	}
	return MergeUMLCow(s.OverlayPath(), dst, progress)
}

var qemuImgProgress = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// qemuImgConvert runs qemu-img with -p and turns its percentages into
// progress calls.
func qemuImgConvert(qemuImg string, args []string, progress func(done, total int64)) error {
	cmd := exec.Command(qemuImg, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr limitedBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	sc.Split(splitCR)
	for sc.Scan() {
		if mm := qemuImgProgress.FindStringSubmatch(sc.Text()); mm != nil && progress != nil {
			f, _ := strconv.ParseFloat(mm[1], 64)
			progress(int64(f*100), 10000)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, stderr.String())
	}
	return nil
}

// splitCR splits on \r or \n (qemu-img redraws its progress with \r).
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		if b == '\r' || b == '\n' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// limitedBuf keeps the first 4 KB written to it (an error message).
type limitedBuf struct{ b []byte }

func (l *limitedBuf) Write(p []byte) (int, error) {
	if n := 4096 - len(l.b); n > 0 {
		l.b = append(l.b, p[:min(n, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuf) String() string { return string(l.b) }

// copyFile copies src to a new dst (0600), with progress.
func copyFile(src, dst string, progress func(done, total int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var done int64
	for {
		n, rerr := in.Read(buf)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				out.Close()
				os.Remove(dst)
				return err
			}
			done += int64(n)
			if progress != nil {
				progress(done, fi.Size())
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			os.Remove(dst)
			return rerr
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}
