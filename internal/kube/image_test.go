package kube

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"cloonix/internal/machine/cnt"
)

func TestImageNames(t *testing.T) {
	tests := []struct {
		ref, registry, want string
	}{
		{"busybox", "", "docker.io/cloonix/rootfs-busybox:latest"},
		{"debian-frr", "reg.example:5000/lab/", "reg.example:5000/lab/cloonix/rootfs-debian-frr:latest"},
		{"/srv/trees/My Tree", "", "docker.io/cloonix/rootfs-my-tree:latest"},
		{"docker-archive:/srv/frr.tar", "", "docker.io/cloonix/rootfs-frr:latest"},
		{"/srv/...", "", "docker.io/cloonix/rootfs-tree:latest"},
	}
	for _, tt := range tests {
		ref, err := cnt.ParseRef(tt.ref)
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		if got := ImageRef(tt.registry, RootfsImageName(ref)); got != tt.want {
			t.Errorf("%s under %q: got %s, want %s", tt.ref, tt.registry, got, tt.want)
		}
	}
}

// TestWriteTree: owners are numeric, hard links stay links, symlinks and
// directories come through, sockets are left out.
func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("bb"), 0o755))
	must(os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "bin/ls")))
	must(os.Symlink("busybox", filepath.Join(root, "bin/sh")))
	var buf bytes.Buffer
	must(writeTree(&buf, root))
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[h.Name] = h
	}
	if h := got["bin/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("bin/: %+v", h)
	}
	if h := got["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh: %+v", h)
	}
	bb, ls := got["bin/busybox"], got["bin/ls"]
	if bb == nil || ls == nil {
		t.Fatalf("missing files: %v", got)
	}
	if bb.Typeflag != tar.TypeReg || bb.Size != 2 || bb.Uname != "" {
		t.Errorf("bin/busybox: %+v", bb)
	}
	if ls.Typeflag != tar.TypeLink || ls.Linkname != "bin/busybox" {
		t.Errorf("bin/ls should be a hard link to bin/busybox: %+v", ls)
	}
	if len(got) != 4 {
		t.Errorf("want 4 entries, got %d: %v", len(got), got)
	}
}
