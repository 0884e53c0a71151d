package cnt

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"cloonix/internal/machine"
)

// treeSum hashes every entry of a tree: name, mode, owner, link target,
// content: the reference tree must read the same after a save.
func treeSum(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(h, "%s %o %d:%d %d\n", p, st.Mode, st.Uid, st.Gid, fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintln(h, l)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			io.Copy(h, f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// marks writes what a save must keep: a file with an owner and setuid,
// a hard link, a symlink out of the tree, a device node, a deleted
// file of the reference tree.
const marks = `echo hello > /root/f && chown 5:6 /root/f && chmod 4750 /root/f && ln /root/f /root/hard &&
ln -s /etc/passwd /root/sl && ln -s / /root/up && mknod /root/null c 1 3 && rm /etc/group && echo ok`

const checkMarks = `cat /root/f; stat -c '%u:%g %a %h' /root/f; readlink /root/sl; ls /etc/group 2>&1 | grep -c 'No such'`

func wantMarks(t *testing.T, c *Container) {
	t.Helper()
	out, code := run(t, c, checkMarks)
	want := "hello\n5:6 4750 2\n/etc/passwd\n1\n"
	if code != 0 || out != want {
		t.Fatalf("%s: got %q (exit %d), want %q", c.Name, out, code, want)
	}
}

func TestSaveAndBoot(t *testing.T) {
	l := newLab(t)
	tree := busyboxTree(t)
	sum := treeSum(t, tree)
	// An extended attribute (as a file capability would be) of the
	// reference tree is kept in a tree copy.
	if err := unix.Lsetxattr(filepath.Join(tree, "etc/passwd"), "trusted.cloonix", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	s := l.spec("orig", tree, 0)
	c := l.start(s)
	if out, _ := run(t, c, marks); !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("marks: %q", out)
	}
	ms := &machine.Spec{Name: s.Name, Dir: s.Dir, Rootfs: tree, Host: machine.Host{BulkDir: filepath.Join(l.base, "bulk")}}
	out := filepath.Join(l.base, "out")
	os.Mkdir(out, 0o755)
	tarFile, treeDir := filepath.Join(out, "orig.tar"), filepath.Join(out, "orig")
	var k Kind
	var last int64
	if err := k.SaveDisk(ms, &guest{c: c}, tarFile, func(done, total int64) { last = done }); err != nil {
		t.Fatal(err)
	}
	if last == 0 {
		t.Error("no progress reported")
	}
	if err := k.SaveDisk(ms, &guest{c: c}, treeDir, nil); err != nil {
		t.Fatal(err)
	}
	wantMarks(t, c) // resumed after the saves

	// The tree copy keeps the device, the hard link and the link out.
	var a, b syscall.Stat_t
	syscall.Lstat(filepath.Join(treeDir, "root/f"), &a)
	syscall.Lstat(filepath.Join(treeDir, "root/hard"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link lost: inodes %d %d, %d links", a.Ino, b.Ino, a.Nlink)
	}
	syscall.Lstat(filepath.Join(treeDir, "root/null"), &a)
	if a.Mode&syscall.S_IFMT != syscall.S_IFCHR || a.Rdev != 0x103 {
		t.Errorf("device node: mode %o rdev %x", a.Mode, a.Rdev)
	}
	if v := xattrs(filepath.Join(treeDir, "etc/passwd"))["trusted.cloonix"]; v != "kept" {
		t.Errorf("xattr of etc/passwd: %q", v)
	}
	if l, _ := os.Readlink(filepath.Join(treeDir, "root/up")); l != "/" {
		t.Errorf("root/up links to %q", l)
	}

	// Stopped with its disk kept: saved from the kept upper directory.
	c.mu.Lock()
	c.keepUpper = true
	c.mu.Unlock()
	c.Stop()
	stopped := filepath.Join(out, "stopped.tar")
	if err := k.SaveDisk(ms, nil, stopped, nil); err != nil {
		t.Fatal(err)
	}

	st := &Store{BulkDir: ms.Host.BulkDir}
	for i, p := range []string{tarFile, treeDir, stopped, "docker-archive:" + tarFile} {
		ref, err := ParseRef(p)
		if err != nil {
			t.Fatal(err)
		}
		rf, err := st.Resolve(ref)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		n := l.spec(fmt.Sprintf("from%d", i), rf.Tree, 0)
		n.Rootfs = rf
		wantMarks(t, l.start(n))
	}
	if got := treeSum(t, tree); got != sum {
		t.Error("the reference tree changed")
	}
}

// A save to a path that exists, or into a missing folder, fails and
// leaves nothing.
func TestSaveBadDestination(t *testing.T) {
	l := newLab(t)
	tree := busyboxTree(t)
	s := l.spec("bad", tree, 0)
	ms := &machine.Spec{Name: s.Name, Dir: s.Dir, Rootfs: tree, Host: machine.Host{BulkDir: filepath.Join(l.base, "bulk")}}
	out := t.TempDir()
	exists := filepath.Join(out, "x.tar")
	os.WriteFile(exists, []byte("keep"), 0o644)
	for _, dst := range []string{exists, filepath.Join(out, "missing/x.tar"), filepath.Join(out, "missing/tree")} {
		err := Kind{}.SaveDisk(ms, nil, dst, nil)
		if err == nil {
			t.Errorf("%s: saved", dst)
		}
		t.Logf("%s: %v", dst, err)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 {
		t.Errorf("left in %s: %v", out, ents)
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep" {
		t.Error("an existing file was overwritten")
	}
}
