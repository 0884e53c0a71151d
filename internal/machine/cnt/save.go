package cnt

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"cloonix/internal/machine"
)

// Saving a node's disk (`ctrl save vm`, docs/containers.md): the node's
// merged root (the cached reference tree under its upper directory) is
// written as a docker-archive tarball when dst ends in .tar, else as a
// new directory tree; both boot with --rootfs dst. A running node is
// paused (runc pause, the cgroup freezer) for the copy.

// IsArchiveName says whether a save to p writes a docker-archive.
func IsArchiveName(p string) bool { return strings.HasSuffix(p, ".tar") }

// SaveDisk writes the node's current root to dst (which must not exist).
// The reference tree and the node's upper directory are only read.
func (Kind) SaveDisk(s *machine.Spec, g machine.Guest, dst string, progress func(done, total int64)) error {
	ref, err := ParseRef(s.Rootfs)
	if err != nil {
		return err
	}
	rf, err := (&Store{BulkDir: s.Host.BulkDir}).Resolve(ref)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s exists; choose a new name", dst)
	}
	if fi, err := os.Stat(filepath.Dir(dst)); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %s does not exist; create it first", filepath.Dir(dst))
	}
	src := rf.Tree
	if gg, ok := g.(*guest); ok && gg != nil && isMount(filepath.Join(s.Dir, "rootfs"), s.Dir) {
		// Running: its merged root is mounted; freeze it for the copy.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := gg.c.Runtime.run(ctx, "pause", s.Name); err != nil {
			return fmt.Errorf("pausing node %s: %v", s.Name, err)
		}
		defer func() {
			if err := gg.c.Runtime.run(context.Background(), "resume", s.Name); err != nil {
				log.Printf("node %s: resuming after save: %v", s.Name, err)
			}
		}()
		src = filepath.Join(s.Dir, "rootfs")
	} else if upper := filepath.Join(s.Dir, "upper"); dirExists(upper) {
		// Stopped with its disk kept: a read-only overlay of both shows
		// the root the node would boot on.
		mnt, err := os.MkdirTemp(s.Dir, ".save-")
		if err != nil {
			return err
		}
		defer os.Remove(mnt)
		if strings.ContainsAny(upper+rf.Tree, ",:") {
			return fmt.Errorf("overlay: %s or %s holds ',' or ':'", upper, rf.Tree)
		}
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+upper+":"+rf.Tree); err != nil {
			return fmt.Errorf("mounting node %s's disk read-only: %v", s.Name, err)
		}
		defer unmount(mnt)
		src = mnt
	}
	return SaveTree(src, dst, rf.Env, progress)
}

// SaveTree writes the tree src to dst: a docker-archive tarball (one
// layer, env in its config) when dst ends in .tar, else a copy of the
// tree. Modes, owners, device nodes, symlinks (never followed) and hard
// links are kept. On error dst is removed.
func SaveTree(src, dst string, env []string, progress func(done, total int64)) (err error) {
	total := treeSize(src)
	p := &counter{total: total, fn: progress}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dst)
		}
	}()
	if IsArchiveName(dst) {
		return writeArchive(src, dst, env, p)
	}
	return copyTree(src, dst, p)
}

type counter struct {
	done, total int64
	fn          func(done, total int64)
}

func (c *counter) add(n int64) {
	c.done += n
	if c.fn != nil {
		c.fn(c.done, c.total)
	}
}

func treeSize(src string) int64 {
	var n int64
	_ = filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// writeArchive tars src once into a file beside dst (the node may be
// paused meanwhile), then writes the image with go-containerregistry.
func writeArchive(src, dst string, env []string, p *counter) error {
	layerTar := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".layer")
	f, err := os.OpenFile(layerTar, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(layerTar)
	err = tarTree(src, f, p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(layerTar, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env = env
	cf.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag("cloonix/saved:latest")
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(dst, tag, img); err != nil {
		return fmt.Errorf("writing %s: %v", dst, err)
	}
	return nil
}

// inode is a hard-linked inode seen once already.
type inode struct{ dev, ino uint64 }

// tarTree writes src's tree as a tar stream, paths relative to src.
func tarTree(src string, w io.Writer, p *counter) error {
	tw := tar.NewWriter(w)
	seen := map[inode]string{}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		h.Name, h.Uname, h.Gname = rel, "", "" // numeric owners of the tree, not the host's names
		h.Format = tar.FormatPAX
		for k, v := range xattrs(path) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if fi.IsDir() {
			h.Name += "/"
		}
		key := inode{uint64(st.Dev), st.Ino}
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := seen[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(h)
			}
			seen[key] = rel
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyN(tw, f, h.Size)
		p.add(n)
		if err != nil {
			return fmt.Errorf("%s: %v (did it change while saving?)", path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// copyTree copies src to the new directory dst, entry by entry (a
// library copy would follow links or drop owners and devices).
func copyTree(src, dst string, p *counter) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	seen := map[inode]string{}
	var dirs []string // modes and times set last: a read-only dir still gets its entries
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch mode := fi.Mode(); {
		case mode.IsDir():
			if rel != "." {
				if err := os.Mkdir(to, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, rel)
			return nil
		case mode&fs.ModeSymlink != 0:
			t, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, to); err != nil {
				return err
			}
		case mode.IsRegular():
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok && st.Nlink > 1 {
				return os.Link(filepath.Join(dst, first), to)
			}
			seen[key] = rel
			n, err := copyFile(path, to)
			p.add(n)
			if err != nil {
				return err
			}
		default: // devices, fifos, sockets
			if err := unix.Mknod(to, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
		}
		if err := setMeta(to, st); err != nil {
			return err
		}
		return copyXattrs(path, to)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := os.Lstat(filepath.Join(src, dirs[i]))
		if err != nil {
			return err
		}
		if err := setMeta(filepath.Join(dst, dirs[i]), fi.Sys().(*syscall.Stat_t)); err != nil {
			return err
		}
		if err := copyXattrs(filepath.Join(src, dirs[i]), filepath.Join(dst, dirs[i])); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) (int64, error) {
	in, err := os.OpenFile(from, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// setMeta gives p the owner, mode and times of st, without following a
// link at p (chown first: it clears setuid bits).
func setMeta(p string, st *syscall.Stat_t) error {
	if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %v", p, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return fmt.Errorf("times of %s: %v", p, err)
	}
	return nil
}

// isMount says whether p is a mount point (the running node's overlay)
// on another filesystem than its parent dir.
func isMount(p, parent string) bool {
	var a, b unix.Stat_t
	return unix.Lstat(p, &a) == nil && unix.Lstat(parent, &b) == nil && a.Dev != b.Dev
}

// xattrs reads p's extended attributes (file capabilities, ACLs) without
// following a link; none when the filesystem has none.
func xattrs(p string) map[string]string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz <= 0 {
		return nil
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil
	}
	m := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		n, err := unix.Lgetxattr(p, k, nil)
		if err != nil || n < 0 {
			continue
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(p, k, v); err == nil {
			m[k] = string(v[:n])
		}
	}
	return m
}

// copyXattrs gives to the extended attributes of from (after chown,
// which drops a file capability).
func copyXattrs(from, to string) error {
	for k, v := range xattrs(from) {
		if err := unix.Lsetxattr(to, k, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("%s: xattr %s: %v", to, k, err)
		}
	}
	return nil
}
