// Package bulk builds the reference guest images from Debian packages
// into bulk_dir (DESIGN section 7, docs/images.md): busybox.img (a small
// rootfs booting under UML and QEMU), the QEMU kernel and initrd
// (vmlinuz, initrd.img) and debian-frr.img (mmdebstrap, systemd, FRR).
// Each build records its inputs in a stamp; a second run with the same
// inputs changes nothing. Outputs are written atomically and never
// modified afterwards.
package bulk

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"cloonix/internal/cmdout"
)

// Image names accepted by Build, in build order.
var Images = []string{"kernels", "busybox", "debian-frr"}

// DefaultImages are built when Build gets no names.
var DefaultImages = Images

// AgentPath is the static cloonix-agent binary copied into images;
// empty means AgentName beside the running executable (make build puts
// bin/cloonix-agent beside bin/cloonix).
var AgentPath string

// AgentName is the agent binary's file name (cmd/cloonix-agent).
const AgentName = "cloonix-agent"

// Log receives progress lines (nil: stderr).
var Log io.Writer

// builderVersion changes whenever the image recipes change, so that
// stamps of older builds no longer match.
const builderVersion = "1"

func logf(format string, a ...any) {
	w := Log
	if w == nil {
		w = os.Stderr
	}
	fmt.Fprintf(w, "bulk: "+format+"\n", a...)
}

// Image is one file of bulk_dir.
type Image struct {
	Name    string // file name, e.g. busybox.img
	Path    string // full path
	Size    int64  // apparent size in bytes
	Disk    int64  // bytes used on disk (images are sparse)
	ModTime time.Time
	Kind    string // rootfs, disk, kernel, initrd
}

// List returns the images of bulkDir: *.img, *.qcow2, vmlinuz, initrd.img,
// linux.uml.
func List(bulkDir string) ([]Image, error) {
	ents, err := os.ReadDir(bulkDir)
	if err != nil {
		return nil, fmt.Errorf("bulk_dir %s: %v (build the images with `cloonix bulk build`)", bulkDir, err)
	}
	var out []Image
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || e.IsDir() {
			continue
		}
		kind := ""
		switch {
		case n == "vmlinuz":
			kind = "kernel"
		case n == "initrd.img":
			kind = "initrd"
		case n == "linux.uml":
			kind = "uml-kernel"
		case strings.HasSuffix(n, ".qcow2"):
			kind = "disk"
		case strings.HasSuffix(n, ".img"):
			kind = "rootfs"
			if hasPartitionTable(filepath.Join(bulkDir, n)) {
				kind = "disk"
			}
		default:
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		im := Image{Name: n, Path: filepath.Join(bulkDir, n), Size: info.Size(), ModTime: info.ModTime(), Kind: kind}
		im.Disk = diskUsage(info)
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// hasPartitionTable reports an MBR signature (GPT disks carry a
// protective MBR): such an image boots from its own bootloader.
func hasPartitionTable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return false
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	// An ext4 superblock at 1024 would mean a bare file system; the MBR
	// signature alone is enough otherwise.
	return true
}

// Build builds the named images (all of DefaultImages when none) into
// bulkDir, skipping those whose stamp matches their inputs.
func Build(bulkDir string, images ...string) error {
	if len(images) == 0 {
		images = DefaultImages
	}
	want := map[string]bool{}
	for _, im := range images {
		im = strings.TrimSuffix(im, ".img")
		ok := false
		for _, k := range Images {
			if k == im {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("unknown image %q: choose from %s", im, strings.Join(Images, ", "))
		}
		want[im] = true
	}
	if err := os.MkdirAll(bulkDir, 0o755); err != nil {
		return fmt.Errorf("bulk_dir %s: %v", bulkDir, err)
	}
	// One build at a time per bulk_dir: they share temporary names.
	lock, err := os.OpenFile(filepath.Join(bulkDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("bulk_dir %s: %v", bulkDir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		logf("waiting for another build in %s", bulkDir)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return fmt.Errorf("bulk_dir %s: lock: %v", bulkDir, err)
		}
	}
	b := &builder{dir: bulkDir}
	for _, im := range Images { // fixed order: kernels before the rootfs
		if !want[im] {
			continue
		}
		var err error
		switch im {
		case "kernels":
			err = b.kernels()
		case "busybox":
			err = b.busybox()
		case "debian-frr":
			err = b.debianFRR()
		}
		if err != nil {
			return fmt.Errorf("building %s: %w", im, err)
		}
	}
	return nil
}

// builder carries what several recipes share.
type builder struct {
	dir      string
	kernel   *kernelInfo
	agentSum string
	agent    string
}

// stamp records a build: its inputs and the outputs it made.
type stamp struct {
	Inputs  map[string]string `json:"inputs"`
	Outputs map[string]string `json:"outputs"` // file -> size:mtime
}

func (b *builder) stampPath(name string) string {
	return filepath.Join(b.dir, ".stamp-"+name+".json")
}

func fileID(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Size(), st.ModTime().UnixNano())
}

// upToDate reports whether name was built from inputs and its outputs
// are untouched since.
func (b *builder) upToDate(name string, inputs map[string]string) bool {
	data, err := os.ReadFile(b.stampPath(name))
	if err != nil {
		return false
	}
	var s stamp
	if json.Unmarshal(data, &s) != nil || len(s.Outputs) == 0 {
		return false
	}
	if len(s.Inputs) != len(inputs) {
		return false
	}
	for k, v := range inputs {
		if s.Inputs[k] != v {
			return false
		}
	}
	for f, id := range s.Outputs {
		if fileID(filepath.Join(b.dir, f)) != id {
			return false
		}
	}
	return true
}

func (b *builder) writeStamp(name string, inputs map[string]string, outputs ...string) error {
	s := stamp{Inputs: inputs, Outputs: map[string]string{}}
	for _, o := range outputs {
		s.Outputs[o] = fileID(filepath.Join(b.dir, o))
	}
	data, _ := json.MarshalIndent(s, "", "  ")
	return writeAtomic(b.stampPath(name), append(data, '\n'), 0o644)
}

// writeAtomic writes data to path through a temporary file and rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// agentBinary finds the static cloonix-agent binary to put in images.
func (b *builder) agentBinary() (string, string, error) {
	if b.agent != "" {
		return b.agent, b.agentSum, nil
	}
	p := AgentPath
	if p == "" {
		self, err := os.Executable()
		if err != nil {
			return "", "", err
		}
		p = filepath.Join(filepath.Dir(self), AgentName)
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", "", fmt.Errorf("agent %s: %v; build it beside cloonix with `make build` (CGO_ENABLED=0 go build -o %s ./cmd/cloonix-agent)", p, err, p)
	}
	static := true
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			static = false
		}
	}
	f.Close()
	if !static {
		return "", "", fmt.Errorf("agent %s is dynamically linked; build it with CGO_ENABLED=0 (make build)", p)
	}
	sum, err := sha256File(p)
	if err != nil {
		return "", "", err
	}
	b.agent, b.agentSum = p, sum
	return p, sum, nil
}

// pkgVersion is the installed version of a Debian package ("" if absent).
func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}|${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	st, v, _ := strings.Cut(string(out), "|")
	if !strings.Contains(st, "ok installed") {
		return ""
	}
	return v
}

// ensurePackages installs the missing Debian packages with apt-get.
func ensurePackages(pkgs ...string) error {
	var missing []string
	for _, p := range pkgs {
		if pkgVersion(p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages: %s (run: sudo apt-get install %s)", strings.Join(missing, " "), strings.Join(missing, " "))
	}
	logf("installing %s", strings.Join(missing, " "))
	install := func() error {
		args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %v\n%s", strings.Join(missing, " "), err, cmdout.Tail(out, 20))
		}
		return nil
	}
	if err := install(); err != nil {
		if out, uerr := exec.Command("apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			return fmt.Errorf("apt-get update: %v\n%s", uerr, cmdout.Tail(out, 10))
		}
		return install()
	}
	return nil
}

// run runs a command, returning its output in the error.
func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, cmdout.Tail(out, 20))
	}
	return nil
}

// inputsKey renders inputs for logs.
func inputsKey(in map[string]string) string {
	h := sha256.New()
	var keys []string
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, in[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
