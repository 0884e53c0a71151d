package daemon

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestAddVMBadInput: add_vm refuses bad input with the kind's error and
// changes nothing (no port, no directory in work_dir). None of these
// reach a guest, so they need no image or emulator.
func TestAddVMBadInput(t *testing.T) {
	s := startSwitch(t)
	before := s.shape()
	for _, c := range []struct {
		kv   []string
		want string
	}{
		{[]string{"name", "x1", "type", "xen"}, "use kvm or uml"},
		{[]string{"name", "ports"}, "reserved"},
		{[]string{"name", "a/b"}, "'/'"},
		{[]string{"name", "x2", "mem", "lots"}, "whole number"},
		{[]string{"name", "x3", "type", "uml", "mem", "4"}, "out of range"},
		{[]string{"name", "x4", "type", "uml", "cpu", "2"}, "one CPU"},
		{[]string{"name", "x5", "type", "uml", "eth", "99"}, "eth"},
		{[]string{"name", "x6", "type", "uml", "transport", "tap"}, "bess or daemon"},
		{[]string{"name", "x7", "type", "kvm", "transport", "bess"}, "UML guests only"},
		{[]string{"name", "x8", "rootfs", "nosuchimage"}, "no such image"},
		{[]string{"name", "x9", "rootfs", "../../etc/passwd"}, "rootfs"},
		{[]string{"name", "x10", "demo", "relative/dir"}, "absolute path"},
		{[]string{"name", "x11", "boot_timeout", "0"}, "boot_timeout"},
	} {
		_, err := s.call("add_vm", c.kv...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("add_vm %v: %v, want an error with %q", c.kv, err, c.want)
		}
	}
	if after := s.shape(); !reflect.DeepEqual(before, after) {
		t.Errorf("bad add_vm changed the lab:\nbefore %+v\nafter  %+v", before, after)
	}
	ents, _ := os.ReadDir(s.cfg.WorkDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "x") {
			t.Errorf("%s left in work_dir", e.Name())
		}
	}
}
