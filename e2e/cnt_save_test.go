package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cacheSums hashes each cached tree of bulk_dir/.cnt (names, modes,
// link targets, contents): a save only reads them. Entries other
// switches may be writing (dot names) are left out.
func cacheSums(t *testing.T) map[string]string {
	t.Helper()
	cache := filepath.Join(bulkDir, ".cnt")
	ents, _ := os.ReadDir(cache)
	sums := map[string]string{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		h := sha256.New()
		root := filepath.Join(cache, e.Name())
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
			if fi.Mode()&fs.ModeSymlink != 0 {
				l, _ := os.Readlink(p)
				fmt.Fprintln(h, l)
			} else if fi.Mode().IsRegular() {
				if f, err := os.Open(p); err == nil {
					io.Copy(h, f)
					f.Close()
				}
			}
			return nil
		})
		sums[e.Name()] = fmt.Sprintf("%x", h.Sum(nil))
	}
	return sums
}

// TestCntSave: a container node saved to an archive and to a tree boots
// new nodes with its files; bad destinations get one error and leave
// nothing; fconf save --with-disks of a lab with a node is loaded by a
// second switch, whose node boots from the saved archive.
func TestCntSave(t *testing.T) {
	needRunc(t)
	l := NewLab(t, "<no_nat>true</no_nat>")
	img := filepath.Join(bulkDir, "busybox.img")
	imgSum := sha256File(t, img)
	l.MustRun("ctrl", "add", "vm", "c1", "--type", "cnt", "--wait")
	before := cacheSums(t)
	l.vmMust("c1", "sh", "-c", "echo snap > /root/snap && ln /root/snap /root/hard && ln -s /etc/passwd /root/sl && chown 7:8 /root/snap")

	tarFile, tree := filepath.Join(l.Dir, "c1.tar"), filepath.Join(l.Dir, "c1-tree")
	l.MustRun("ctrl", "save", "vm", "c1", tarFile)
	l.MustRun("ctrl", "save", "vm", "c1", tree)
	if fi, err := os.Stat(tree); err != nil || !fi.IsDir() {
		t.Fatalf("%s is not a tree: %v", tree, err)
	}
	l.mustFail("exists", "ctrl", "save", "vm", "c1", tarFile)
	l.mustFail("exists", "ctrl", "save", "vm", "c1", tree)
	l.mustFail("cannot write", "ctrl", "save", "vm", "c1", "/proc/c1.tar")
	if _, err := os.Stat("/proc/c1.tar"); err == nil {
		t.Fatal("a failed save left a file")
	}
	if ents, _ := filepath.Glob(filepath.Join(l.Dir, ".part-*")); len(ents) > 0 {
		t.Fatalf("saves left %v", ents)
	}
	l.vmMust("c1", "true") // runs on after the saves

	want := "snap\n7:8 2\n/etc/passwd\n"
	check := []string{"sh", "-c", "cat /root/snap; stat -c '%u:%g %h' /root/snap; readlink /root/sl"}
	for i, rootfs := range []string{tarFile, "docker-archive:" + tarFile, tree} {
		n := fmt.Sprintf("n%d", i)
		l.MustRun("ctrl", "add", "vm", n, "--type", "cnt", "--rootfs", rootfs, "--wait")
		if got := l.vmMust(n, check...); got != want {
			t.Fatalf("%s booted from %s: %q, want %q", n, rootfs, got, want)
		}
	}

	// A stopped node saves from its kept disk.
	l.MustRun("ctrl", "stop", "vm", "c1")
	l.MustRun("ctrl", "save", "vm", "c1", filepath.Join(l.Dir, "stopped.tar"))
	if st := l.vmOf("c1").State; st != "stopped" {
		t.Fatalf("save left c1 %s", st)
	}
	l.MustRun("ctrl", "start", "vm", "c1", "--wait")

	// Portable lab: one node, loaded by a second switch.
	for _, n := range []string{"n0", "n1", "n2"} {
		l.MustRun("ctrl", "del", "vm", n)
	}
	dir := filepath.Join(l.Dir, "portable")
	out := l.MustRun("fconf", "save", "--with-disks", dir)
	if !strings.Contains(out, "saved 1 VMs") {
		t.Fatalf("fconf save --with-disks:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "disks", "c1.tar")); err != nil {
		t.Fatalf("no archive of c1: %v\n%s", err, out)
	}
	l2 := NewLab(t, "<no_nat>true</no_nat>")
	l2.load(dir)
	if got := l2.vmMust("c1", check...); got != want {
		t.Fatalf("c1 on the second switch: %q, want %q", got, want)
	}

	if sha256File(t, img) != imgSum {
		t.Fatal("busybox.img changed")
	}
	after := cacheSums(t)
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("the cached tree %s changed", k)
		}
	}
}
