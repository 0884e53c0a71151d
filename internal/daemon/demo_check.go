package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"cloonix/internal/proto"
)

// MaxDemoTree bounds the bytes a demo puts on one guest's config CD.
const MaxDemoTree = 256 << 20

// checkDemo checks a demo folder named by a client (add_vm's demo) with
// the rules fconf applies, since any client can name any folder and the
// switch reads it as root: an absolute path free of symlinks, a delete
// file that is a regular file (never a link to a file of the host) within
// proto.DemoMaxDeleteFile, trees proto.CheckDemoTree accepts (no links
// leaving them, no devices, pipes or sockets) within MaxDemoTree bytes.
// It returns the trees for vm and the delete commands.
func checkDemo(demo, vm string) (trees []string, del string, err error) {
	if !filepath.IsAbs(demo) || filepath.Clean(demo) != demo {
		return nil, "", fmt.Errorf("demo folder %q must be a clean absolute path", demo)
	}
	real, err := filepath.EvalSymlinks(demo)
	if err != nil {
		return nil, "", fmt.Errorf("demo folder %s: %v", demo, err)
	}
	if real != demo {
		return nil, "", fmt.Errorf("demo folder %s goes through a symlink (to %s); give the real path", demo, real)
	}
	if fi, err := os.Lstat(demo); err != nil || !fi.IsDir() {
		return nil, "", fmt.Errorf("demo folder %s is not a directory", demo)
	}
	total := int64(0)
	for _, t := range []string{proto.DemoAllTargets, proto.DemoTargetPrefix + vm} {
		p := filepath.Join(demo, t)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := proto.CheckDemoTree(p); err != nil {
			return nil, "", err
		}
		n, err := treeBytes(p)
		if err != nil {
			return nil, "", err
		}
		if total += n; total > MaxDemoTree {
			return nil, "", fmt.Errorf("demo folder %s: the trees for %s hold more than %d MiB; refused", demo, vm, MaxDemoTree>>20)
		}
		trees = append(trees, p)
	}
	del, err = readDeleteFile(filepath.Join(demo, proto.DemoDeleteName))
	return trees, del, err
}

func treeBytes(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// readDeleteFile reads the delete commands without following a symlink
// and within the size limit; a missing file is no commands.
func readDeleteFile(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return "", fmt.Errorf("%s: a symlink; it must be a regular file of shell commands; refused", p)
		}
		return "", fmt.Errorf("%s: %v", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: must be a regular file of shell commands; refused", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, proto.DemoMaxDeleteFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > proto.DemoMaxDeleteFile {
		return "", fmt.Errorf("%s: more than %d bytes; refused", p, proto.DemoMaxDeleteFile)
	}
	return string(b), nil
}
