package cnt

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// untar writes a flattened image's tar stream into dir (a new, empty
// directory). Written here rather than with a library because the rules
// are ours: every operation goes through an os.Root, so no entry can
// reach outside dir whatever its name or the links before it; an entry
// below a symlink is skipped (in a flattened image it is a lower layer's
// file hidden by an upper layer's link); devices and fifos are skipped
// (the runtime makes /dev). Owners, modes and times are kept.
func untar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the image's files: %v", err)
		}
		name, ok := cleanEntry(h.Name)
		if !ok {
			continue // "." or the root itself
		}
		if underLink(root, name) {
			continue
		}
		if err := untarEntry(root, tr, h, name); err != nil {
			return fmt.Errorf("image file /%s: %v", name, err)
		}
	}
}

// cleanEntry makes a tar name relative to the root: "./a/../b" is "b".
// Names leaving the root ("../x") are reduced to inside it, as the
// runtime would see them.
func cleanEntry(n string) (string, bool) {
	n = path.Clean("/" + strings.ReplaceAll(n, "\\", "/"))
	n = strings.TrimPrefix(n, "/")
	if n == "" || n == "." || strings.ContainsRune(n, 0) {
		return "", false
	}
	return n, true
}

// underLink reports whether an existing parent of name is not a
// directory (a symlink, most often).
func underLink(root *os.Root, name string) bool {
	parts := strings.Split(name, "/")
	p := ""
	for _, c := range parts[:len(parts)-1] {
		p = path.Join(p, c)
		st, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		if err != nil || !st.IsDir() {
			return true
		}
	}
	return false
}

func untarEntry(root *os.Root, tr *tar.Reader, h *tar.Header, name string) error {
	if err := mkParents(root, name); err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode & 0o777)
	for bit, m := range map[int64]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if h.Mode&bit != 0 {
			mode |= m
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		st, err := root.Lstat(name)
		if err == nil && !st.IsDir() {
			if err := root.RemoveAll(name); err != nil {
				return err
			}
		}
		if err != nil || !st.IsDir() {
			if err := root.Mkdir(name, 0o755); err != nil {
				return err
			}
		}
	case tar.TypeReg:
		if err := replace(root, name); err != nil {
			return err
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := replace(root, name); err != nil {
			return err
		}
		if err := root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, h.Uid, h.Gid)
	case tar.TypeLink:
		target, ok := cleanEntry(h.Linkname)
		if !ok {
			return fmt.Errorf("hard link to %q", h.Linkname)
		}
		if err := replace(root, name); err != nil {
			return err
		}
		return root.Link(target, name)
	default:
		return nil // devices, fifos: the runtime provides /dev
	}
	if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
		return err
	}
	if err := root.Chmod(name, mode); err != nil { // after chown, which clears setuid
		return err
	}
	return root.Chtimes(name, h.ModTime, h.ModTime)
}

// mkParents makes the missing parents of name.
func mkParents(root *os.Root, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	return root.MkdirAll(dir, 0o755)
}

// replace removes what is at name unless it is a directory (a later
// layer's entry replaces an earlier one).
func replace(root *os.Root, name string) error {
	st, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return root.RemoveAll(name)
	}
	return root.Remove(name)
}
