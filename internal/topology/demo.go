package topology

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cloonix/internal/proto"
)

// Names of the seed's demo folder entries (DESIGN section 4).
const (
	TopologyName = "topology"
	DeleteName   = proto.DemoDeleteName
	AllTargets   = proto.DemoAllTargets
	TargetPrefix = proto.DemoTargetPrefix
)

// MaxDeleteFile bounds files_to_delete_from_all_targets.
const MaxDeleteFile = proto.DemoMaxDeleteFile

// Demo is a topology file and the demo folder around it, checked.
type Demo struct {
	File     string    // the topology file
	Dir      string    // the demo folder, absolute and free of symlinks; "" when it holds no demo files
	Topology *Topology // the parsed file
	Warnings []string  // things that look like mistakes but are not errors
}

// Load reads a topology file, or a demo folder holding `topology`, and
// checks all of it: the file, the demo folder it names (<config_path>),
// and every tree that will be copied into a guest. Symlinks or paths that
// would leave the demo folder or a tree are refused. Nothing is changed.
func Load(path string) (*Demo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v (give a topology file or a demo folder holding %q)", path, errText(err), TopologyName)
	}
	file := path
	if st.IsDir() {
		file = filepath.Join(path, TopologyName)
		if err := insideRegular(path, file, "the topology file"); err != nil {
			return nil, err
		}
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	t, err := ParseFile(file)
	if err != nil {
		return nil, err
	}
	d := &Demo{File: file, Topology: t}
	base, err := filepath.EvalSymlinks(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Dir(file), errText(err))
	}
	base, err = filepath.Abs(base)
	if err != nil {
		return nil, err
	}
	dir := base
	if t.ConfigPath != "" && t.ConfigPath != "." {
		// Parse refused absolute paths and "..", so only symlinks are left
		// to check.
		dir, err = filepath.EvalSymlinks(filepath.Join(base, t.ConfigPath))
		if err != nil {
			return nil, fmt.Errorf("%s: <config_path> %q: %v", file, t.ConfigPath, errText(err))
		}
		if !within(base, dir) {
			return nil, fmt.Errorf("%s: <config_path> %q leads to %s, outside the topology file's folder %s; refused", file, t.ConfigPath, dir, base)
		}
	}
	if err := d.checkFolder(dir); err != nil {
		return nil, err
	}
	return d, nil
}

func errText(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// within tells whether p is root or below it (both clean, absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// insideRegular checks that file exists in folder as a regular file and,
// if it is a symlink, that it stays inside folder.
func insideRegular(folder, file, what string) error {
	fi, err := os.Lstat(file)
	if err != nil {
		return fmt.Errorf("%s: %v (%s)", file, errText(err), what)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(file)
		if err != nil {
			return fmt.Errorf("%s: a symlink that leads nowhere: %v", file, errText(err))
		}
		rf, err := filepath.EvalSymlinks(folder)
		if err != nil {
			return err
		}
		if !within(rf, real) {
			return fmt.Errorf("%s: a symlink to %s, outside the demo folder %s; refused (copy the file in)", file, real, folder)
		}
		fi, err = os.Stat(real)
		if err != nil {
			return err
		}
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", file, what)
	}
	return nil
}

// checkFolder looks at the demo entries of dir: the delete file and
// every files_to_add_in_* tree.
func (d *Demo) checkFolder(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("demo folder %s: %v", dir, errText(err))
	}
	found := false
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case name == DeleteName:
			found = true
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: must be a regular file of shell commands (not a symlink or folder); refused", p)
			}
			if fi.Size() > MaxDeleteFile {
				return fmt.Errorf("%s: %d bytes; the limit is %d", p, fi.Size(), MaxDeleteFile)
			}
		case strings.HasPrefix(name, TargetPrefix):
			found = true
			target := strings.TrimPrefix(name, TargetPrefix)
			if name != AllTargets && d.Topology.VM(target) == nil {
				d.Warnings = append(d.Warnings, fmt.Sprintf("%s: no VM %q in %s; this folder is not used", p, target, d.File))
			}
			if err := CheckTree(p); err != nil {
				return err
			}
		}
	}
	// Saved disks (fconf save --with-disks) are files of disks/.
	for _, v := range d.Topology.VMs {
		if v.Disk != "" && !filepath.IsAbs(v.Disk) {
			if err := insideRegular(dir, filepath.Join(dir, DisksDir, v.Disk), "VM "+v.Name+"'s <disk_file>"); err != nil {
				return err
			}
			found = true
		}
	}
	if found {
		d.Dir = dir
	}
	sort.Strings(d.Warnings)
	return nil
}

// CheckTree checks a tree that will be copied into a guest's / (the
// rules are proto's, which the switch applies too: proto.CheckDemoTree).
func CheckTree(root string) error { return proto.CheckDemoTree(root) }
