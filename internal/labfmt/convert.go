package labfmt

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"cloonix/internal/topology"
)

// BootScript is where each node's boot script goes in its tree: run by
// the guest's agent at every boot, after the demo trees are in place.
const BootScript = "etc/rc.d/S60_lab"

// Write writes the lab as a native demo folder in dir (created if
// missing; it must be empty or hold only an earlier conversion): the
// topology file, files_to_add_in_NODE trees and each node's boot script.
// Loading dir gives the lab.
func (l *Lab) Write(dir, as string) error {
	if err := prepareDir(dir); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		root := filepath.Join(dir, topology.TargetPrefix+n.Name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		for _, t := range n.Trees {
			if err := copyTree(t, root); err != nil {
				return err
			}
		}
		for _, f := range n.Files {
			dst := filepath.Join(root, strings.TrimPrefix(filepath.Clean(f.Guest), "/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if f.Src != "" {
				if err := copyAny(f.Src, dst); err != nil {
					return err
				}
				continue
			}
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
			}
			if err := writeFile(dst, f.Data, mode); err != nil {
				return err
			}
		}
		if n.Boot != "" {
			dst := filepath.Join(root, BootScript)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := writeFile(dst, []byte(n.Boot), 0o755); err != nil {
				return err
			}
		}
	}
	t := l.Topology(as)
	return t.WriteFile(filepath.Join(dir, topology.TopologyName))
}

// prepareDir makes dir, refusing a folder that holds anything but an
// earlier conversion (a topology file and demo entries), which it clears.
func prepareDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if n != topology.TopologyName && !strings.HasPrefix(n, topology.TargetPrefix) && n != topology.DeleteName {
			return fmt.Errorf("%s: not empty (holds %s); give a new or empty folder", dir, n)
		}
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dst string, data []byte, mode os.FileMode) error {
	os.Remove(dst) // a symlink from a copied tree is replaced, never followed
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// copyAny copies a file or a folder (as checked by topology.CheckTree).
func copyAny(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if err := os.MkdirAll(dst, st.Mode().Perm()|0o700); err != nil {
			return err
		}
		return copyTree(src, dst)
	}
	return copyFile(src, dst, st.Mode().Perm())
}

// copyTree copies the content of src into dst: folders, regular files
// (modes kept) and symlinks (as links, never followed).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.MkdirAll(to, info.Mode().Perm()|0o700)
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(to)
			return os.Symlink(target, to)
		case e.Type().IsRegular():
			return copyFile(p, to, info.Mode().Perm())
		}
		return fmt.Errorf("%s: not a folder, file or symlink; refused", p)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
