package cnt

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"cloonix/internal/machine"
)

// Lifecycle of a node (docs/machines.md, "Lifecycle"): a stop keeps the
// overlay's upper directory (the node's disk) for a start with
// Spec.KeepDisk; the carrier of an eth is its tap's (TUNSETCARRIER).

// Shutdown stops the node keeping its upper directory. A container has
// no kernel of its own to power off: the node's processes are killed
// (their writes are in the host's page cache, nothing to flush).
func (g *guest) Shutdown(time.Duration) {
	g.c.mu.Lock()
	g.c.keepUpper = true
	g.c.mu.Unlock()
	g.Stop()
}

// SetLink sets the carrier the node sees on ethN.
func (g *guest) SetLink(eth int, up bool) error { return g.c.SetCarrier(eth, up) }

// SetCarrier sets the carrier of the node's tap i (NO-CARRIER inside).
// Taps the caller made (the switch's) are not held here: ErrNoCarrier,
// and the holder sets it (SetTapCarrier).
func (c *Container) SetCarrier(i int, up bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.taps) == 0 {
		return machine.ErrNoCarrier
	}
	if i < 0 || i >= len(c.taps) {
		return fmt.Errorf("node %s has no eth%d", c.Name, i)
	}
	return SetTapCarrier(c.taps[i], up)
}

// SetTapCarrier sets the carrier of the tap f is open on.
func SetTapCarrier(f *os.File, up bool) error {
	v := 0
	if up {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.TUNSETCARRIER, v); err != nil {
		return fmt.Errorf("carrier of %s: %v", f.Name(), err)
	}
	return nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// clearStale removes what a node's last run left but its upper directory
// (the switch may have died with it running): runtime state, overlay
// mount, work and bundle.
func (s *Spec) clearStale(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = s.Runtime.run(ctx, "delete", "--force", s.Name)
	unmount(s.path("rootfs"))
	for _, d := range []string{"rootfs", "work", "cloonix", "config.json", "init.pid"} {
		_ = os.RemoveAll(s.path(d))
	}
}
