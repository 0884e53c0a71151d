package daemon

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cloonix/internal/machine"
	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// The journal (DESIGN section 10) is the lab as a topology file
// (docs/topology.md: VMs with their stopped state, lans, tux, forwards,
// impairments, links, positions) in work_dir, rewritten atomically after
// every change. A switch that ends with `cloonix stop` removes it; one
// that died leaves it, with every guest's disk in work_dir/NAME, and
// `cloonix start --resume` brings the lab back from both.

// JournalName is the journal's file in work_dir.
const JournalName = "lab.journal"

// readOnly verbs never change the lab: no journal write after them.
var readOnly = map[string]bool{"list": true, "ping": true, "subscribe": true, "exec": true,
	"console": true, "capture": true, "save_vm": true, "stop": true}

// journal is the daemon's writer of the journal.
type journal struct {
	mu     sync.Mutex
	path   string
	hold   bool // while resuming: the lab is not whole yet
	closed bool // after shutdown began
	kick   chan struct{}
	done   chan struct{}
}

// JournalPath is where the switch of cfg keeps its journal.
func JournalPath(workDir string) string { return filepath.Join(workDir, JournalName) }

// Resume makes Run bring the lab back from the journal (start --resume);
// Discard makes it delete the journal first (start --discard).
func (d *Daemon) SetResume(resume, discard bool) { d.resume, d.discard = resume, discard }

// SetReaper gives the command of the reaper (machine.StartReaper) that
// kills the guests if the switch dies.
func (d *Daemon) SetReaper(argv []string) { d.reaperArgv = argv }

// checkJournal runs before the switch listens: a journal left by a switch
// that died must be resumed or discarded, never overwritten unasked.
func (d *Daemon) checkJournal() error {
	p := JournalPath(d.Cfg.WorkDir)
	d.jr = &journal{path: p, kick: make(chan struct{}, 1), done: make(chan struct{})}
	_, err := os.Stat(p)
	exists := err == nil
	switch {
	case d.discard:
		if exists {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("discarding the journal %s: %v", p, err)
			}
			log.Printf("journal %s discarded", p)
		}
		d.sweepWorkDir()
		return nil
	case d.resume && !exists:
		return fmt.Errorf("no journal in %s: nothing to resume (start without --resume)", d.Cfg.WorkDir)
	case d.resume:
		t, err := topology.ParseFile(p)
		if err != nil {
			return fmt.Errorf("the journal cannot be resumed, it is left as it is: %v; repair it, or `cloonix start --discard` to start empty", err)
		}
		d.resumeTopo = t
		d.jr.hold = true
		return nil
	case exists:
		what := "a lab"
		if t, err := topology.ParseFile(p); err == nil {
			what = describe(t)
		}
		return fmt.Errorf("%s holds the journal of %s whose switch ended without `cloonix stop`: `cloonix start --resume` brings it back, `cloonix start --discard` starts empty", p, what)
	}
	return nil
}

func describe(t *topology.Topology) string {
	var n []string
	for _, v := range t.VMs {
		n = append(n, v.Name)
	}
	s := fmt.Sprintf("%d vms", len(t.VMs))
	if len(n) > 0 {
		s += " (" + strings.Join(n, ", ") + ")"
	}
	return fmt.Sprintf("a lab of %s, %d tux", s, len(t.Tux))
}

// startJournal runs the writer; stopJournal (at shutdown, after the VMs
// are gone) ends it and removes the journal: a clean stop leaves none.
func (d *Daemon) startJournal() {
	j := d.jr
	go func() {
		defer close(j.done)
		for range j.kick {
			j.mu.Lock()
			skip := j.hold || j.closed
			j.mu.Unlock()
			if skip {
				continue
			}
			if err := d.writeJournal(); err != nil {
				log.Printf("journal: %v", err)
			}
		}
	}()
}

func (d *Daemon) stopJournal() {
	j := d.jr
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	close(j.kick)
	<-j.done
	_ = os.Remove(j.path)
}

// journalChanged asks for the journal to be rewritten; requests made
// while a write runs are folded into one more write.
func (d *Daemon) journalChanged() {
	j := d.jr
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// writeJournal writes the lab atomically: a temporary file (0600),
// fsync, rename, fsync of the folder.
func (d *Daemon) writeJournal() error {
	b := topology.FromLab(d.Lab()).Bytes()
	return writeAtomic(d.jr.path, b)
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if df, err := os.Open(dir); err == nil {
		_ = df.Sync()
		df.Close()
	}
	return nil
}

// localCaller runs control requests inside the switch (for resume).
type localCaller struct{ d *Daemon }

func (l localCaller) Do(req proto.Request) error {
	attrs, inner, err := proto.EncodeRequest(req)
	if err != nil {
		return err
	}
	h, ok := l.d.verbs[req.Verb()]
	if !ok {
		return fmt.Errorf("unknown request <%s>", req.Verb())
	}
	_, err = h(l.d, nil, &proto.Msg{Name: req.Verb(), Attrs: attrs, Inner: inner})
	return err
}

// resumeLab brings back the journal's lab: each step of the plan from
// the switch's fresh lab (its default nat) is made in turn, guests boot
// from the disks they left in work_dir; a step that fails is logged and
// the others go on (nothing is undone: undoing would delete kept disks).
func (d *Daemon) resumeLab() {
	t := d.resumeTopo
	plan := topology.DiffWith(d.Lab(), t, topology.Options{Add: true})
	c := localCaller{d}
	var failed []string
	for _, s := range plan.Steps {
		req := s.Request("")
		if r, ok := req.(*proto.AddVM); ok {
			r.KeepDisk = true
			if !dirExists(filepath.Join(d.Cfg.WorkDir, s.Name)) {
				log.Printf("resume: vm %s left no disk in work_dir; it boots from its image", s.Name)
			}
		}
		if err := c.Do(req); err != nil {
			log.Printf("resume: %s: %v", s, err)
			failed = append(failed, s.String()+": "+err.Error())
		}
	}
	j := d.jr
	j.mu.Lock()
	j.hold = false
	j.mu.Unlock()
	d.journalChanged()
	kv := []string{"steps", fmt.Sprint(len(plan.Steps))}
	if len(failed) > 0 {
		kv = append(kv, "failed", strings.Join(failed, "; "))
	}
	d.Emit("lab_resumed", kv...)
	log.Printf("resume: %d steps from the journal, %d failed", len(plan.Steps), len(failed))
}

func dirExists(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// sweepWorkDir removes what the guests of a switch that died left in
// work_dir (start --discard): the kinds' host state (a container's
// runtime record and mounts), then each guest's directory.
func (d *Daemon) sweepWorkDir() {
	d.vmt().registry().Sweep(machine.Host{BulkDir: d.Cfg.BulkDir, WorkDir: d.Cfg.WorkDir, Accel: d.Cfg.Accel, OCIRuntime: d.Cfg.OCIRuntime})
	ents, _ := os.ReadDir(d.Cfg.WorkDir)
	for _, e := range ents {
		dir := filepath.Join(d.Cfg.WorkDir, e.Name())
		if e.IsDir() && fileExists(filepath.Join(dir, vmMarker)) {
			if err := os.RemoveAll(dir); err != nil {
				log.Printf("discard: %v", err)
			}
		}
	}
}
