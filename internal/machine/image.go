package machine

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"cloonix/internal/proto"
)

// Image is a resolved root disk.
type Image struct {
	Path   string // absolute path, opened read-only
	Name   string // as the user gave it
	Format string // raw or qcow2
	// Disk is true for a bootable disk (partition table and bootloader):
	// QEMU boots it from disk. Otherwise it is a bare filesystem booted
	// with the bulk kernel.
	Disk bool
}

// ResolveImage finds --rootfs NAME: <bulk>/NAME.qcow2 or <bulk>/NAME.img
// (also NAME with its extension), or an absolute path to an image file.
func ResolveImage(bulkDir, name string) (Image, error) {
	var cands []string
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return Image{}, fmt.Errorf("rootfs %q: give a name from bulk_dir (%s) or an absolute path", name, bulkDir)
		}
		cands = []string{filepath.Clean(name)}
	} else {
		if err := proto.CheckName("rootfs", name); err != nil {
			return Image{}, err
		}
		cands = []string{filepath.Join(bulkDir, name+".qcow2"), filepath.Join(bulkDir, name+".img")}
		if strings.HasSuffix(name, ".img") || strings.HasSuffix(name, ".qcow2") {
			cands = []string{filepath.Join(bulkDir, name)}
		}
	}
	for _, p := range cands {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if !fi.Mode().IsRegular() {
			return Image{}, fmt.Errorf("rootfs %s is not a regular file", p)
		}
		img := Image{Path: p, Name: name, Format: "raw"}
		head, err := readHead(p)
		if err != nil {
			return Image{}, fmt.Errorf("rootfs %s: %v", p, err)
		}
		if bytes.HasPrefix(head, []byte("QFI\xfb")) {
			img.Format, img.Disk = "qcow2", true
			// A saved filesystem image (`ctrl save` of a guest booted
			// with the bulk kernel) has no partition table.
			if sec, ok := qcow2BootSector(p); ok && !hasMBR(sec) {
				img.Disk = false
			}
		} else if hasMBR(head) {
			img.Disk = true // MBR or GPT's protective MBR
		}
		return img, nil
	}
	return Image{}, fmt.Errorf("rootfs %q: no such image in %s; images there: %s (build them with `cloonix bulk build`)", name, bulkDir, listImages(bulkDir))
}

func readHead(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return b[:n], nil
}

// listImages names the images in bulkDir for error messages.
func listImages(bulkDir string) string {
	var names []string
	for _, pat := range []string{"*.img", "*.qcow2"} {
		m, _ := filepath.Glob(filepath.Join(bulkDir, pat))
		for _, p := range m {
			b := filepath.Base(p)
			names = append(names, strings.TrimSuffix(strings.TrimSuffix(b, ".img"), ".qcow2"))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Programs the machine manager runs, and the Debian package of each.
var programs = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"qemu-img":           "qemu-utils",
	"linux.uml":          "user-mode-linux",
}

// LookProgram finds a program or says which Debian package installs it.
func LookProgram(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if name == "linux.uml" {
		if _, err := os.Stat("/usr/bin/linux.uml"); err == nil {
			return "/usr/bin/linux.uml", nil
		}
	}
	return "", fmt.Errorf("%s not found: install the Debian package %s (apt-get install %s)", name, programs[name], programs[name])
}
