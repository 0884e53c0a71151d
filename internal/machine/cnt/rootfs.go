package cnt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Rootfs is a resolved root filesystem: a reference tree, never written,
// that a node's overlay mounts as its lower layer.
type Rootfs struct {
	Ref  Ref
	Tree string   // the reference tree (lowerdir)
	Env  []string // from an OCI image's config ("" for the others)
}

// Store resolves --rootfs values. Bulk images and OCI images are
// unpacked once into CacheDir, keyed by the image's checksum or digest;
// directory trees are used where they are.
type Store struct {
	BulkDir  string // where busybox.img, debian-frr.img are
	CacheDir string // unpacked trees; default BulkDir/.cnt
}

func (s *Store) cacheDir() string {
	if s.CacheDir != "" {
		return s.CacheDir
	}
	return filepath.Join(s.BulkDir, ".cnt")
}

// imageMeta is kept beside each cached tree.
type imageMeta struct {
	Source string   `json:"source"`
	Env    []string `json:"env,omitempty"`
}

// Resolve finds (and unpacks when needed) the tree of ref. Nothing is
// left behind when it fails.
func (s *Store) Resolve(ref Ref) (*Rootfs, error) {
	var (
		rf  *Rootfs
		err error
	)
	switch ref.Kind {
	case RefBulk:
		rf, err = s.bulk(ref, filepath.Join(s.BulkDir, ref.Arg+".img"))
	case RefDir:
		rf, err = s.dirOrFile(ref)
	case RefOCI, RefDockerArchive, RefDocker:
		rf, err = s.oci(ref)
	default:
		err = fmt.Errorf("unknown rootfs kind %q", ref.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", ref, err)
	}
	if err := checkShell(rf.Tree); err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", ref, err)
	}
	return rf, nil
}

func (s *Store) dirOrFile(ref Ref) (*Rootfs, error) {
	st, err := os.Stat(ref.Arg)
	if err != nil {
		return nil, errors.New(errText(err))
	}
	if st.IsDir() {
		return &Rootfs{Ref: ref, Tree: ref.Arg}, nil
	}
	if isExt4(ref.Arg) {
		return s.bulk(ref, ref.Arg)
	}
	if isTar(ref.Arg) {
		// A saved node (ctrl save vm, fconf save --with-disks).
		rf, err := s.oci(Ref{Kind: RefDockerArchive, Arg: ref.Arg})
		if rf != nil {
			rf.Ref = ref
		}
		return rf, err
	}
	return nil, errors.New("not a directory, an ext4 image nor a tar archive; for an OCI layout say oci:DIR")
}

// checkShell requires /bin/sh in the tree: the node's init is a shell.
func checkShell(tree string) error {
	p, err := resolveIn(tree, "bin/sh")
	if err != nil {
		return fmt.Errorf("no /bin/sh in %s (%v): a container node runs its rc.d scripts with /bin/sh", tree, err)
	}
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("/bin/sh in %s is not an executable file: a container node runs its rc.d scripts with /bin/sh", tree)
	}
	return nil
}

// resolveIn follows rel inside root as the container will see it:
// absolute links are taken from root, ".." stops at root.
func resolveIn(root, rel string) (string, error) {
	todo := strings.Split(strings.Trim(rel, "/"), "/")
	var done []string
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := filepath.Join(append([]string{root}, append(done, c)...)...)
		st, err := os.Lstat(p)
		if err != nil {
			return "", errors.New(errText(err))
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if hops++; hops > 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		t, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(t, "/") {
			done = nil
		}
		todo = append(strings.Split(t, "/"), todo...)
	}
	return filepath.Join(append([]string{root}, done...)...), nil
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// isExt4 checks the ext2/3/4 superblock magic.
func isExt4(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, 1024+0x38); err != nil {
		return false
	}
	return b[0] == 0x53 && b[1] == 0xEF
}

// isTar says whether p starts with a tar header (ustar magic at 257).
func isTar(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 257); err != nil {
		return false
	}
	return string(b) == "ustar"
}

// bulk unpacks an ext4 image once: the tree is keyed by the image's
// sha256 (remembered per size, mtime and inode so it is read once).
func (s *Store) bulk(ref Ref, img string) (*Rootfs, error) {
	st, err := os.Stat(img)
	if err != nil {
		if ref.Kind == RefBulk {
			return nil, fmt.Errorf("no image %s in bulk_dir %s (build it with `cloonix bulk build %s`, or give a path)", filepath.Base(img), s.BulkDir, ref.Arg)
		}
		return nil, errors.New(errText(err))
	}
	if !isExt4(img) {
		return nil, fmt.Errorf("%s is not an ext4 image", img)
	}
	if err := os.MkdirAll(s.cacheDir(), 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %v", s.cacheDir(), err)
	}
	sum, err := s.imageSum(img, st)
	if err != nil {
		return nil, err
	}
	tree, meta, err := s.cached("img-"+sum[:24], func(dst string) (imageMeta, error) {
		return imageMeta{Source: img}, unpackExt4(img, dst)
	})
	if err != nil {
		return nil, err
	}
	return &Rootfs{Ref: ref, Tree: tree, Env: meta.Env}, nil
}

func (s *Store) imageSum(img string, st os.FileInfo) (string, error) {
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	memo := filepath.Join(s.cacheDir(), fmt.Sprintf("sum-%s-%d-%d-%d", filepath.Base(img), st.Size(), st.ModTime().UnixNano(), ino))
	if b, err := os.ReadFile(memo); err == nil && len(b) == 64 {
		return string(b), nil
	}
	f, err := os.Open(img)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %v", img, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	_ = os.WriteFile(memo, []byte(sum), 0o644)
	return sum, nil
}

// cached returns CacheDir/key/rootfs, making it with fill (into a
// temporary directory renamed in place) when missing. Concurrent callers
// for one key wait for each other.
func (s *Store) cached(key string, fill func(dst string) (imageMeta, error)) (string, imageMeta, error) {
	dir := filepath.Join(s.cacheDir(), key)
	tree := filepath.Join(dir, "rootfs")
	var meta imageMeta
	read := func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "image.json"))
		return err == nil && json.Unmarshal(b, &meta) == nil
	}
	if read() {
		return tree, meta, nil
	}
	lock, err := os.OpenFile(filepath.Join(s.cacheDir(), ".lock-"+key), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", meta, fmt.Errorf("cache %s: %v", s.cacheDir(), err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", meta, err
	}
	defer os.Remove(lock.Name())
	if read() {
		return tree, meta, nil
	}
	tmp, err := os.MkdirTemp(s.cacheDir(), ".tmp-"+key+"-")
	if err != nil {
		return "", meta, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(filepath.Join(tmp, "rootfs"), 0o755); err != nil {
		return "", meta, err
	}
	meta, err = fill(filepath.Join(tmp, "rootfs"))
	if err != nil {
		return "", meta, err
	}
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "image.json"), b, 0o644); err != nil {
		return "", meta, err
	}
	os.RemoveAll(dir) // an unfinished earlier attempt
	if err := os.Rename(tmp, dir); err != nil {
		return "", meta, err
	}
	return tree, meta, nil
}

// unpackExt4 copies an ext4 image's files into dst through a read-only
// loop mount (cp -a keeps owners, modes, links, xattrs such as ping's
// capabilities).
func unpackExt4(img, dst string) error {
	mnt, err := os.MkdirTemp(filepath.Dir(dst), ".mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,ro,noload", img, mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("mounting %s read-only: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	defer func() {
		if exec.Command("umount", mnt).Run() != nil {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}()
	if out, err := exec.Command("cp", "-a", mnt+"/.", dst+"/").CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s: %v: %s", img, err, tail(out, 5))
	}
	return nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
