package daemon

import (
	"fmt"
	"log"
	"path/filepath"
	"sync"

	"cloonix/internal/wire"
)

// Each lan offers a VDE switch directory <work_dir>/vde/LAN/ with its ctl
// socket (DESIGN section 6): every client that plugs in there (vde_plug,
// QEMU -nic vde, UML ethN=daemon) becomes a port vde:LAN:N on that lan,
// removed when it leaves. The directories follow the lans through the
// fabric's OnLan hook; a worker makes and removes them outside the
// fabric's lock.

type vdeState struct {
	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}
	dirs  map[string]*wire.VDEDir
	n     int
	// stopped is closed when the worker has returned, so closeVDE never
	// races a directory being made.
	stopped chan struct{}
}

// vde returns the daemon's VDE state, starting its worker on first use.
func (d *Daemon) vde() *vdeState {
	d.vdeOnce.Do(func() {
		d.vdeSt = &vdeState{dirty: map[string]bool{}, kick: make(chan struct{}, 1), dirs: map[string]*wire.VDEDir{}, stopped: make(chan struct{})}
		go d.vdeWorker(d.vdeSt)
	})
	return d.vdeSt
}

func vdeFeature() Feature {
	return Feature{Name: "vde", Start: func(d *Daemon) {
		d.OnStop(func() { d.closeVDE() })
	}}
}

// vdeLanChanged is the fabric's OnLan hook: note the lan, wake the worker.
func (d *Daemon) vdeLanChanged(lan string, up bool) {
	v := d.vde()
	v.mu.Lock()
	v.dirty[lan] = true
	v.mu.Unlock()
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

func (d *Daemon) vdeWorker(v *vdeState) {
	defer close(v.stopped)
	for {
		select {
		case <-v.kick:
		case <-d.Done():
			return
		}
		v.mu.Lock()
		dirty := v.dirty
		v.dirty = map[string]bool{}
		v.mu.Unlock()
		for lan := range dirty {
			has := d.Fab.HasLan(lan)
			v.mu.Lock()
			dir := v.dirs[lan]
			v.mu.Unlock()
			switch {
			case has && dir == nil:
				vd, err := wire.ListenVDE(filepath.Join(d.Cfg.VDEDir(), lan), func(c *wire.DaemonConn) { d.vdePlug(lan, c) })
				if err != nil {
					log.Printf("lan %s: no VDE directory: %v", lan, err)
					continue
				}
				v.mu.Lock()
				v.dirs[lan] = vd
				v.mu.Unlock()
			case !has && dir != nil:
				v.mu.Lock()
				delete(v.dirs, lan)
				v.mu.Unlock()
				dir.Close()
			}
		}
	}
}

// vdePlug makes a port for one VDE client and puts it on the lan.
func (d *Daemon) vdePlug(lan string, c *wire.DaemonConn) {
	v := d.vde()
	v.mu.Lock()
	v.n++
	name := fmt.Sprintf("vde:%s:%d", lan, v.n)
	v.mu.Unlock()
	p, err := d.Fab.AddPort(name, "vde")
	if err != nil {
		c.Close()
		return
	}
	p.SetConn(c)
	d.Emit("port_added", "name", name, "kind", "vde", "socket", filepath.Join(d.Cfg.VDEDir(), lan, "ctl"))
	if err := d.AttachPort(name, lan); err != nil {
		log.Printf("VDE plug %s: %v", name, err)
		c.Close()
	}
	go func() {
		<-c.Done()
		_ = d.DelPort(name)
	}()
}

// closeVDE runs after Stop: it waits for the worker, then closes the dirs.
func (d *Daemon) closeVDE() {
	v := d.vde()
	<-v.stopped
	v.mu.Lock()
	dirs := v.dirs
	v.dirs = map[string]*wire.VDEDir{}
	v.mu.Unlock()
	for _, dir := range dirs {
		dir.Close()
	}
}
