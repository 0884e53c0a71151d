package labfmt

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// DefaultAs is the node type used when --as is not given: cnt where the
// container kind works on this host (cntUsable), else uml. Foreign labs
// are container labs, so containers are their natural form; UML is the
// fallback every host can run.
func DefaultAs() string {
	if defaultCntErr() == nil {
		return "cnt"
	}
	return "uml"
}

// defaultCntErr probes the host once per process.
var defaultCntErr = sync.OnceValue(func() error { return cntUsable(hostProbe{}) })

// probe is what cntUsable asks the host (a type, so tests can fake one).
type probe interface {
	runtimeVersion() ([]byte, error) // `runc --version`
	exists(path string) bool
	read(path string) ([]byte, error)
}

type hostProbe struct{}

func (hostProbe) runtimeVersion() ([]byte, error) {
	p, err := exec.LookPath("runc")
	if err != nil {
		return nil, err
	}
	return exec.Command(p, "--version").Output()
}

func (hostProbe) exists(p string) bool { _, err := os.Stat(p); return err == nil }

func (hostProbe) read(p string) ([]byte, error) { return os.ReadFile(p) }

// cntUsable tells why container nodes cannot run here, or nil: the
// runtime the kind defaults to (runc) must run, and the kernel must have
// the tun device and overlayfs (docs/containers.md "Needs"). A client
// cannot import the kind (internal/machine/cnt), so these are checked
// here the cheap way, without starting a container.
func cntUsable(p probe) error {
	out, err := p.runtimeVersion()
	if err != nil {
		return fmt.Errorf("runc does not run (%v): apt-get install runc", err)
	}
	if !bytes.Contains(out, []byte("runc version")) {
		return fmt.Errorf("runc --version says %q", strings.TrimSpace(string(out)))
	}
	if !p.exists("/dev/net/tun") {
		return fmt.Errorf("no /dev/net/tun: the kernel lacks tun")
	}
	fs, err := p.read("/proc/filesystems")
	if err != nil {
		return err
	}
	if !bytes.Contains(fs, []byte("\toverlay\n")) {
		// overlay may be a module not loaded yet; modprobe loads it on
		// the first mount, so its presence on disk is enough.
		rel, _ := p.read("/proc/sys/kernel/osrelease")
		mod := "/lib/modules/" + strings.TrimSpace(string(rel)) + "/kernel/fs/overlayfs"
		if !p.exists(mod) {
			return fmt.Errorf("the kernel has no overlay filesystem")
		}
	}
	return nil
}
