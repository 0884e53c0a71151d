package kube

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeTree writes the tree at root as a layer tar (paths relative to
// root, numeric owners, hard links, devices, and the security.capability
// xattr that ping and others need in a rootfs). Sockets are skipped: they
// mean nothing in an image. Written here rather than taken from a library
// because go-containerregistry reads layers but does not make them from
// a tree with owners and xattrs.
func writeTree(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{} // (dev, inode) -> first path
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		return addEntry(tw, p, filepath.ToSlash(rel), fi, links)
	})
	if err != nil {
		return fmt.Errorf("tar of %s: %w", root, err)
	}
	return tw.Close()
}

func addEntry(tw *tar.Writer, p, name string, fi os.FileInfo, links map[[2]uint64]string) error {
	target := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		target = t
	}
	hdr, err := tar.FileInfoHeader(fi, target)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", "" // numeric owners: the host's names mean nothing in the image
	hdr.Format = tar.FormatPAX
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			links[key] = name
		}
	}
	if fi.Mode().IsRegular() || fi.IsDir() {
		if caps := xattr(p, "security.capability"); caps != "" {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": caps}
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func xattr(p, name string) string {
	b := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, b)
	if err != nil || n <= 0 {
		return ""
	}
	return string(b[:n])
}

// fileLayer writes files (image path -> host path), symlinks (image path
// -> target) and the directories they need, plus the empty directories
// dirs, as a layer tar.
func fileLayer(w io.Writer, files, symlinks map[string]string, dirs ...string) error {
	tw := tar.NewWriter(w)
	made := map[string]bool{}
	mkdirs := func(p string) error {
		var parts []string
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if made[d] {
				continue
			}
			made[d] = true
			mode := int64(0o755)
			if d == "/tmp" {
				mode = 0o1777
			}
			h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range dirs {
		if err := mkdirs(d + "/."); err != nil {
			return err
		}
	}
	for _, dst := range sortedKeys(files) {
		src := files[dst]
		if err := mkdirs(dst); err != nil {
			return err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: fi.Size()}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, fi.Size())
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}
	for _, dst := range sortedKeys(symlinks) {
		if err := mkdirs(dst); err != nil {
			return err
		}
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(dst, "/"), Linkname: symlinks[dst], Mode: 0o777}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	return tw.Close()
}
