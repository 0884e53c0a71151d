package guest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func mkTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(content, "->"):
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "x:"):
			if err := os.WriteFile(p, []byte(content[2:]), 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestCDRoundTrip(t *testing.T) {
	dir := t.TempDir()
	all := filepath.Join(dir, "files_to_add_in_all_targets")
	vm := filepath.Join(dir, "files_to_add_in_A")
	mkTree(t, all, map[string]string{
		"etc/init.d/ospf":        "x:#!/bin/sh\necho all\n",
		"etc/rc.d/S80_ospf":      "->../init.d/ospf",
		"etc/motd":               "from all",
		"etc/abs":                "->/usr/bin/env",
		"root/.profile":          "PS1=x",
		"usr/share/a b/file.txt": "spaces",
	})
	mkTree(t, vm, map[string]string{
		"etc/motd":         "from A",
		"etc/frr/frr.conf": "hostname A",
	})
	if err := os.Chmod(filepath.Join(all, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(dir, "cd.iso")
	spec := CDSpec{Name: "A", SSHKey: "ssh-rsa AAAA test@host\n", DeleteCmds: "rm -f /etc/rc.d/S60quagga\n", Trees: []string{all, vm}, Eths: 3, Mgmt: "172.30.0.9/24"}
	if err := WriteCD(iso, spec); err != nil {
		t.Fatal(err)
	}
	c, err := ReadCD(iso)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "A" || c.SSHKey != "ssh-rsa AAAA test@host" || c.Eths != 3 || c.DeleteCmds != spec.DeleteCmds || c.Mgmt != spec.Mgmt {
		t.Fatalf("read back %+v", c)
	}
	root := t.TempDir()
	if err := ExtractTrees(root, c.Trees); err != nil {
		t.Fatal(err)
	}
	check := func(name, want string, mode fs.FileMode) {
		t.Helper()
		p := filepath.Join(root, name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(want, "->") {
			l, err := os.Readlink(p)
			if err != nil || l != want[2:] {
				t.Fatalf("%s: link %q %v, want %q", name, l, err, want[2:])
			}
			return
		}
		data, _ := os.ReadFile(p)
		if string(data) != want || st.Mode().Perm() != mode {
			t.Fatalf("%s: %q mode %v, want %q %v", name, data, st.Mode().Perm(), want, mode)
		}
	}
	check("etc/init.d/ospf", "#!/bin/sh\necho all\n", 0o755)
	check("etc/rc.d/S80_ospf", "->../init.d/ospf", 0)
	check("etc/abs", "->/usr/bin/env", 0)
	check("etc/motd", "from A", 0o640) // per-VM wins
	check("etc/frr/frr.conf", "hostname A", 0o640)
	check("usr/share/a b/file.txt", "spaces", 0o640)
	if st, _ := os.Stat(filepath.Join(root, "root")); st.Mode().Perm() != 0o700 {
		t.Fatalf("new directory mode %v, want 0700", st.Mode().Perm())
	}
	// Extracting twice (a reboot) works and changes nothing.
	if err := ExtractTrees(root, c.Trees); err != nil {
		t.Fatal(err)
	}
	check("etc/rc.d/S80_ospf", "->../init.d/ospf", 0)

	// The NoCloud files for cloud-init, and the volume label.
	raw, _ := os.ReadFile(iso)
	if !bytes.Contains(raw, []byte("CIDATA")) && !bytes.Contains(raw, []byte("cidata")) {
		t.Fatal("no cidata label")
	}
	ud := string(userData(spec, []cloudFile{{"/etc/motd", 0o640, []byte("from all")}, {"/etc/motd", 0o644, []byte("from A")}}))
	for _, want := range []string{"#cloud-config\n", `hostname: "A"`, `- "ssh-rsa AAAA test@host"`, "write_files:", `permissions: "0644"`, "disable_root: false", "bootcmd:"} {
		if !strings.Contains(ud, want) {
			t.Fatalf("user-data lacks %q:\n%s", want, ud)
		}
	}
	if strings.Count(ud, `path: "/etc/motd"`) != 1 {
		t.Fatalf("user-data should keep only the last /etc/motd:\n%s", ud)
	}
	if md := string(metaData("A")); !strings.Contains(md, "instance-id: cloonix-A") || !strings.Contains(md, "local-hostname: A") {
		t.Fatal(md)
	}
}

func TestCDNoCloudFilesReadable(t *testing.T) {
	// cloud-init finds meta-data and user-data by their Rock Ridge names.
	dir := t.TempDir()
	iso := filepath.Join(dir, "cd.iso")
	if err := WriteCD(iso, CDSpec{Name: "vm1"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fsys, err := openISO(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"meta-data", "user-data"} {
		fh, err := fsys.OpenFile("/"+name, os.O_RDONLY)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fh.Close()
	}
	if l := strings.TrimSpace(fsys.Label()); !strings.EqualFold(l, "cidata") {
		t.Fatalf("label %q", l)
	}
}

func TestCDRefusesEscapes(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"relative link out", map[string]string{"etc/x": "->../../../etc/shadow"}, "etc/x"},
		{"link to parent", map[string]string{"y": "->.."}, "/y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tree := filepath.Join(dir, "tree")
			mkTree(t, tree, tc.files)
			iso := filepath.Join(dir, "cd.iso")
			err := WriteCD(iso, CDSpec{Name: "A", Trees: []string{tree}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "leads out") {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
			if _, err := os.Stat(iso); err == nil {
				t.Fatal("a CD was written anyway")
			}
		})
	}
	// A fifo is refused too.
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	if err := syscall.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteCD(filepath.Join(dir, "cd.iso"), CDSpec{Name: "A", Trees: []string{tree}}); err == nil || !strings.Contains(err.Error(), "fifo") {
		t.Fatalf("fifo: %v", err)
	}
	// A missing tree is named.
	if err := WriteCD(filepath.Join(dir, "cd.iso"), CDSpec{Name: "A", Trees: []string{"/nonexistent/tree"}}); err == nil || !strings.Contains(err.Error(), "/nonexistent/tree") {
		t.Fatalf("missing tree: %v", err)
	}
	if err := WriteCD(filepath.Join(dir, "cd.iso"), CDSpec{Name: "a/b"}); err == nil {
		t.Fatal("bad name accepted")
	}
}

func TestExtractRefusesWritingThroughSymlinks(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	outside := t.TempDir()
	// "lnk" is an absolute link (allowed: it names a guest path); a later
	// tree writing lnk/file must not land in the host's directory.
	mkTree(t, tree, map[string]string{"lnk": "->" + outside})
	tree2 := filepath.Join(dir, "tree2")
	mkTree(t, tree2, map[string]string{"lnk/file": "evil"})
	iso := filepath.Join(dir, "cd.iso")
	if err := WriteCD(iso, CDSpec{Name: "A", Trees: []string{tree, tree2}}); err != nil {
		t.Fatal(err)
	}
	c, err := ReadCD(iso)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	err = ExtractTrees(root, c.Trees)
	if _, serr := os.Stat(filepath.Join(outside, "file")); serr == nil {
		t.Fatal("a file was written outside the root")
	}
	if err == nil {
		// lnk (a symlink) replaced by a directory is also acceptable.
		if st, _ := os.Lstat(filepath.Join(root, "lnk")); st == nil || st.Mode()&fs.ModeSymlink != 0 {
			t.Fatal("extract went through a symlink")
		}
	}
}

func TestAuthorizedKey(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 2; i++ {
		if err := WriteAuthorizedKey(root, "ssh-ed25519 AAA k\n"); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(root, "root/.ssh/authorized_keys"))
	if string(data) != "ssh-ed25519 AAA k\n" {
		t.Fatalf("%q", data)
	}
	st, _ := os.Stat(filepath.Join(root, "root/.ssh"))
	if st.Mode().Perm() != 0o700 {
		t.Fatal(st.Mode())
	}
}

func FuzzReadCD(f *testing.F) {
	dir := f.TempDir()
	iso := filepath.Join(dir, "cd.iso")
	tree := filepath.Join(dir, "t")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/x"), []byte("x"), 0o644)
	if err := WriteCD(iso, CDSpec{Name: "A", Trees: []string{tree}}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(iso)
	f.Add(seed)
	f.Add(seed[:40000])
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := readCD(bytesFile{bytes.NewReader(data)}, int64(len(data)))
		if err != nil {
			return
		}
		root := t.TempDir()
		_ = ExtractTrees(root, c.Trees)
	})
}

// bytesFile is an in-memory fs.File for the ISO reader.
type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error                 { return nil }
func (b bytesFile) Stat() (fs.FileInfo, error) { return nil, fs.ErrInvalid }

func TestCDRefusesBadMgmt(t *testing.T) {
	if err := WriteCD(filepath.Join(t.TempDir(), "cd.iso"), CDSpec{Name: "A", Mgmt: "172.30.0.9"}); err == nil || !strings.Contains(err.Error(), "ADDR/LEN") {
		t.Fatalf("a management address without its length: %v", err)
	}
}
