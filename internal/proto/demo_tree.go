package proto

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DemoMaxDeleteFile bounds files_to_delete_from_all_targets.
const DemoMaxDeleteFile = 1 << 20

// The rules of a demo folder's trees live here, beside the folder's
// names, because both fconf (topology) and the switch (daemon) apply
// them: any client may name a demo folder to the switch.

// CheckDemoTree checks a tree that will be copied into a guest's /: a real
// folder holding only folders, regular files and symlinks. A relative
// symlink target, read from the link's folder, must stay inside the tree;
// an absolute one names a guest path (e.g. /run/resolv.conf) and is kept
// as it is: links are copied as links, never followed on the host.
func CheckDemoTree(root string) error {
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("%s: %v", root, demoErrText(err))
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s: is a symlink; make it a real folder (symlinks inside it are copied as symlinks); refused", root)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: must be a folder whose content is copied into the guest's /", root)
	}
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %v", p, demoErrText(err))
		}
		t := e.Type()
		switch {
		case t.IsDir() || t.IsRegular():
			return nil
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("%s: %v", p, demoErrText(err))
			}
			if target == "" || strings.ContainsRune(target, 0) {
				return fmt.Errorf("%s: an empty symlink; refused", p)
			}
			if filepath.IsAbs(target) {
				return nil
			}
			resolved := filepath.Join(filepath.Dir(p), target)
			if !demoWithin(root, resolved) {
				return fmt.Errorf("%s: a symlink to %s would leave %s; refused (use a target inside the tree, or an absolute guest path)", p, target, root)
			}
			return nil
		default:
			return fmt.Errorf("%s: a %s; a demo tree holds only folders, files and symlinks; refused", p, demoTypeName(t))
		}
	})
}

func demoTypeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func demoErrText(err error) string {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// demoWithin tells whether p is root or below it (both clean, absolute).
func demoWithin(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}
