package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"cloonix/internal/topology"
)

// TestLifecycleBadInput: stop, start, save and link refuse bad input with
// one clear error each and change nothing.
func TestLifecycleBadInput(t *testing.T) {
	s := startSwitch(t)
	s.must("add_lan", "name", "l")
	before := s.shape()
	for _, c := range []struct {
		verb string
		kv   []string
		want string
	}{
		{"stop_vm", []string{"name", "nope"}, "no such vm"},
		{"start_vm", []string{"name", "nope"}, "no such vm"},
		{"stop_vm", []string{"name", "nope", "timeout", "0"}, "timeout"},
		{"save_vm", []string{"name", "nope", "file", "rel.img"}, "absolute path"},
		{"save_vm", []string{"name", "nope", "file", "/nonexistent-dir/x.img"}, "does not exist"},
		{"save_vm", []string{"name", "nope", "file", "/proc/x.img"}, "cannot write"},
		{"save_vm", []string{"name", "nope", "file", "/etc/hostname"}, "exists"},
		{"save_vm", []string{"name", "nope", "file", "/tmp/x-life.img"}, "no such vm"},
		{"link", []string{"port", "nope", "state", "down"}, "no such port"},
		{"link", []string{"port", "nope", "state", "sideways"}, "use up or down"},
		{"link", []string{"port", "x"}, "state"},
	} {
		_, err := s.call(c.verb, c.kv...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want an error with %q", c.verb, c.kv, err, c.want)
		}
	}
	if after := s.shape(); !reflect.DeepEqual(before, after) {
		t.Errorf("bad input changed the lab:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestStoppedVM: a VM added stopped has its ports on its lans, no
// process, and refuses stop; del removes it. Needs the busybox image
// and linux.uml (it is never booted).
func TestStoppedVM(t *testing.T) {
	bulk := os.Getenv("CLOONIX_BULK")
	if bulk == "" {
		home, _ := os.UserHomeDir()
		bulk = filepath.Join(home, "cloonix_labs", "bulk")
	}
	if _, err := os.Stat(filepath.Join(bulk, "busybox.img")); err != nil {
		t.Skip("no busybox image in", bulk)
	}
	s := startSwitch(t)
	s.d.Cfg.BulkDir = bulk
	s.must("add_vm", "name", "s1", "type", "uml", "state", "stopped")
	s.must("attach", "port", "s1:eth0", "lan", "l")
	s.must("link", "port", "s1:eth0", "state", "down")
	lab := s.d.Lab()
	if len(lab.VMs) != 1 || lab.VMs[0].State != "stopped" || lab.VMs[0].Pid != 0 || lab.VMs[0].Eths[0].Link != "down" {
		t.Fatalf("stopped vm in list: %+v", lab.VMs)
	}
	if _, err := s.call("stop_vm", "name", "s1"); err == nil || !strings.Contains(err.Error(), "already stopped") {
		t.Fatalf("stop of a stopped vm: %v", err)
	}
	if _, err := s.call("exec", "name", "s1"); err == nil {
		t.Fatal("exec in a stopped vm worked")
	}
	if b := topology.FromLab(lab).Bytes(); !strings.Contains(string(b), "<state> stopped </state>") || !strings.Contains(string(b), "<link> down </link>") {
		t.Fatalf("topology of the lab:\n%s", b)
	}
	s.must("del_vm", "name", "s1")
	if _, err := os.Stat(filepath.Join(s.cfg.WorkDir, "s1")); err == nil {
		t.Fatal("del vm left its directory")
	}
}

// TestJournal: every change rewrites the journal (0600, a topology file
// of the lab); a clean stop removes it; a switch refuses to start over
// one, resumes it with --resume, refuses a corrupt one and leaves it.
func TestJournal(t *testing.T) {
	s := startSwitch(t)
	j := JournalPath(s.cfg.WorkDir)
	s.must("add_lan", "name", "kept")
	s.must("set_pos", "kind", "lan", "name", "kept", "x", "5", "y", "6")
	var top *topology.Topology
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if top, err = topology.ParseFile(j); err == nil && len(top.Lans) == 1 && top.Lans[0].X != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal %s not written: %v", j, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(j); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode: %v %v", fi.Mode(), err)
	}
	// A copy stands for the journal of a switch that died.
	b, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	s.stop()
	if _, err := os.Stat(j); err == nil {
		t.Fatal("a clean stop left the journal")
	}
	if err := os.WriteFile(j, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d := New(s.cfg)
	if err := d.Run(); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("start over a journal: %v", err)
	}
	if err := os.WriteFile(j, []byte("<TOPOLOGY><LAN>"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = New(s.cfg)
	d.SetResume(true, false)
	if err := d.Run(); err == nil || !strings.Contains(err.Error(), "cannot be resumed") {
		t.Fatalf("resume of a corrupt journal: %v", err)
	}
	if got, _ := os.ReadFile(j); string(got) != "<TOPOLOGY><LAN>" {
		t.Fatalf("the corrupt journal was changed: %q", got)
	}
	if err := os.WriteFile(j, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d = New(s.cfg)
	d.SetResume(true, false)
	ran := make(chan error, 1)
	go func() { ran <- d.Run() }()
	deadline = time.Now().Add(10 * time.Second)
	for {
		lab := d.Lab()
		if len(lab.Lans) == 1 && lab.Lans[0].Name == "kept" && lab.Lans[0].X != nil && *lab.Lans[0].X == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resumed lab: %+v", lab.Lans)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}
