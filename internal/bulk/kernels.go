package bulk

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cloonix/internal/hostcpu"
)

// initrdModules are what the tiny initrd loads to mount a virtio-blk ext4
// root (the Debian kernel has them as modules).
var initrdModules = []string{"virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "crc32c_intel"}

// initScript is the initrd's /init: load the disk modules, find root=,
// mount it and switch to it. Much faster under TCG than Debian's
// initramfs-tools (no udev, a 1 MB image).
const initScript = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules.order); do insmod "/$m" 2>/dev/null; done
root= init=/sbin/init fstype=ext4 mode=rw flags=
for a in $(cat /proc/cmdline); do
	case "$a" in
	root=*) root="${a#root=}" ;;
	init=*) init="${a#init=}" ;;
	rootfstype=*) fstype="${a#rootfstype=}" ;;
	rootflags=*) flags=",${a#rootflags=}" ;;
	ro) mode=ro ;;
	rw) mode=rw ;;
	esac
done
[ -n "$root" ] || root=/dev/vda
i=0
while :; do
	case "$root" in
	UUID=*|LABEL=*|PARTUUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
	*) dev="$root" ;;
	esac
	[ -n "$dev" ] && [ -b "$dev" ] && break
	i=$((i+1))
	if [ $i -gt 200 ]; then
		echo "initrd: root device $root not found; a shell:"
		exec sh
	fi
	sleep 0.05
done
mkdir -p /newroot
if ! mount -t "$fstype" -o "$mode$flags" "$dev" /newroot; then
	echo "initrd: cannot mount $dev ($fstype); a shell:"
	exec sh
fi
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
umount /sys /proc
exec switch_root /newroot "$init"
`

var initrdApplets = []string{"sh", "mount", "umount", "insmod", "switch_root", "mkdir", "sleep", "cat", "findfs", "echo", "[", "test", "ls", "dmesg"}

// kernels installs vmlinuz and builds initrd.img.
func (b *builder) kernels() error {
	if err := ensurePackages("linux-image-amd64", "busybox-static", "kmod", "user-mode-linux", "xz-utils"); err != nil {
		return err
	}
	k, err := debianKernel()
	if err != nil {
		return err
	}
	b.kernel = k
	u, err := umlKernel()
	if err != nil {
		return err
	}
	host, herr := hostcpu.XstateSize()
	if herr != nil {
		host = -1
	}
	inputs := map[string]string{
		"uml":     u.Release + "=" + u.PkgVer,
		"xstate":  fmt.Sprint(host),
		"builder": builderVersion,
		"kernel":  k.Pkg + "=" + k.PkgVer,
		"busybox": pkgVersion("busybox-static"),
		"init":    inputsKey(map[string]string{"script": initScript, "mods": strings.Join(initrdModules, ",")}),
		"vmlinuz": "pvh-elf",
	}
	if b.upToDate("kernels", inputs) {
		logf("vmlinuz, initrd.img, linux.uml: up to date (%s, UML %s)", k.Release, u.Release)
		return nil
	}
	if _, _, err := umlBinary(b.dir); err != nil {
		return err
	}
	logf("vmlinuz, initrd.img: kernel %s", k.Release)
	how, err := installKernel(filepath.Join(b.dir, "vmlinuz"), k.Vmlinuz)
	if err != nil {
		return err
	}
	logf("vmlinuz: %s", how)
	initrd, err := buildInitrd(k)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(b.dir, "initrd.img"), initrd, 0o644); err != nil {
		return err
	}
	return b.writeStamp("kernels", inputs, "vmlinuz", "initrd.img", "linux.uml")
}

func buildInitrd(k *kernelInfo) ([]byte, error) {
	mods, err := selectModules(k.ModDir, initrdModules)
	if err != nil {
		return nil, err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox: %v (apt-get install busybox-static)", err)
	}
	var w cpioWriter
	for _, d := range []string{"bin", "dev", "proc", "sys", "etc", "newroot", "lib", "lib/modules", "lib/modules/" + k.Release} {
		w.dir(d, 0o755)
	}
	w.file("bin/busybox", bb, 0o755)
	for _, a := range initrdApplets {
		w.symlink("bin/"+a, "busybox")
	}
	w.file("init", []byte(initScript), 0o755)
	// Directories of the modules, then the modules in load order.
	dirs := map[string]bool{}
	var order []string
	for _, m := range mods {
		p := filepath.Join("lib/modules", k.Release, m)
		for d := filepath.Dir(p); d != "lib/modules/"+k.Release && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		order = append(order, p)
	}
	var ds []string
	for d := range dirs {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for _, d := range ds {
		w.dir(d, 0o755)
	}
	for _, p := range order {
		data, err := os.ReadFile(filepath.Join(k.ModDir, strings.TrimPrefix(p, "lib/modules/"+k.Release+"/")))
		if err != nil {
			return nil, err
		}
		w.file(p, data, 0o644)
	}
	w.file("etc/modules.order", []byte(strings.Join(order, "\n")+"\n"), 0o644)
	w.trailer()
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	zw.Write(w.buf.Bytes())
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// cpioWriter writes the "newc" cpio format the kernel unpacks.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) entry(name string, mode uint32, data []byte) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string, perm uint32)               { w.entry(name, 0o040000|perm, nil) }
func (w *cpioWriter) file(name string, data []byte, perm uint32) { w.entry(name, 0o100000|perm, data) }
func (w *cpioWriter) symlink(name, target string)                { w.entry(name, 0o120777, []byte(target)) }
func (w *cpioWriter) trailer()                                   { w.entry("TRAILER!!!", 0, nil) }
