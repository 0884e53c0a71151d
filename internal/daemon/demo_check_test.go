package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDemoCheckedBySwitch (issue 15, finding 3): a client that names a
// demo folder directly (ctrl add vm --demo, TCP, the page) meets the
// same checks as fconf: a delete file symlinked to a host file, a tree
// with a device or an escaping link, or a symlinked folder are refused
// before anything reads them onto a guest's CD.
func TestDemoCheckedBySwitch(t *testing.T) {
	s := startSwitch(t)
	secret := filepath.Join(t.TempDir(), "root-only")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(f func(dir string)) string {
		dir := filepath.Join(t.TempDir(), "demo")
		if err := os.MkdirAll(filepath.Join(dir, "files_to_add_in_all_targets", "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		f(dir)
		return dir
	}
	cases := map[string]struct {
		dir  string
		want string
	}{
		"delete file linked to a host file": {mk(func(d string) {
			_ = os.Symlink(secret, filepath.Join(d, "files_to_delete_from_all_targets"))
		}), "symlink"},
		"tree link leaving the tree": {mk(func(d string) {
			_ = os.Symlink("../../../"+secret, filepath.Join(d, "files_to_add_in_all_targets", "etc", "x"))
		}), "would leave"},
		"a named pipe in a tree": {mk(func(d string) {
			_ = syscall.Mkfifo(filepath.Join(d, "files_to_add_in_V1", "p"), 0o600)
		}), ""},
		"relative demo path": {"demo", "absolute"},
	}
	// The fifo case needs its folder first.
	fifo := cases["a named pipe in a tree"]
	_ = os.MkdirAll(filepath.Join(fifo.dir, "files_to_add_in_V1"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(fifo.dir, "files_to_add_in_V1", "p"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo.want = "named pipe"
	cases["a named pipe in a tree"] = fifo
	link := filepath.Join(t.TempDir(), "linked-demo")
	_ = os.Symlink(mk(func(string) {}), link)
	cases["demo folder through a symlink"] = struct {
		dir  string
		want string
	}{link, "symlink"}
	for name, c := range cases {
		_, err := s.call("add_vm", "name", "V1", "type", "uml", "rootfs", "busybox", "demo", c.dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
	}
	if len(s.shape().VMs) != 0 {
		t.Fatal("a VM was made from a refused demo")
	}
}
