package guest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunRCInOrder(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\necho \""+body+" $1\" >> "+log+"\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("S20b", "b", 0o644) // not executable: run with sh
	write("S10a", "a", 0o755)
	write("K10x", "x", 0o755)  // not S*
	write("S30c~", "c", 0o755) // editor backup
	os.Symlink("S10a", filepath.Join(dir, "S40link"))
	scripts := RCScripts(dir)
	if got := strings.Join(scripts, ","); got != strings.Join([]string{dir + "/S10a", dir + "/S20b", dir + "/S40link"}, ",") {
		t.Fatalf("scripts %s", got)
	}
	var out bytes.Buffer
	RunRC(scripts, &out, 5*time.Second)
	data, _ := os.ReadFile(log)
	if string(data) != "a start\nb start\na start\n" {
		t.Fatalf("ran %q (output %q)", data, out.String())
	}
	// A script that does not end is left behind after its time.
	os.WriteFile(filepath.Join(dir, "S50hang"), []byte("#!/bin/sh\nsleep 5\n"), 0o755)
	start := time.Now()
	RunRC([]string{filepath.Join(dir, "S50hang")}, &out, 300*time.Millisecond)
	if time.Since(start) > 3*time.Second || !strings.Contains(out.String(), "still running") {
		t.Fatalf("hanging script: %v %q", time.Since(start), out.String())
	}
}

func TestRunDeleteCmds(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "victim")
	os.WriteFile(f, nil, 0o644)
	var out bytes.Buffer
	if err := RunDeleteCmds("rm -f "+f+"\necho done\n", &out); err != nil || out.String() != "done\n" {
		t.Fatalf("%v %q", err, out.String())
	}
	if _, err := os.Stat(f); err == nil {
		t.Fatal("not deleted")
	}
	if err := RunDeleteCmds("exit 3", &out); err == nil || !strings.Contains(err.Error(), "files_to_delete_from_all_targets") {
		t.Fatalf("failing commands: %v", err)
	}
	if err := RunDeleteCmds("  \n", &out); err != nil {
		t.Fatal(err)
	}
}
