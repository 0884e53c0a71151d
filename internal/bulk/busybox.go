package bulk

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"cloonix/internal/cmdout"
)

// Modules put in the busybox image: NICs QEMU can emulate and the usual
// network features, for each kernel (names not found are built in).
var (
	busyboxQEMUModules = []string{
		"virtio_net", "virtio_pci", "virtio_blk", "virtio_console", "virtio_rng", "e1000", "e1000e", "8139too", "8139cp", "ne2k_pci", "pcnet32", "vmxnet3",
		"ext4", "isofs", "8021q", "bridge", "tun", "veth", "dummy", "bonding", "macvlan", "vxlan", "ipip", "ip_gre", "sit", "ip6_tunnel", "vrf",
		"af_packet", "mpls_router", "mpls_iptunnel",
	}
	busyboxUMLModules = []string{
		"ipv6", "isofs", "8021q", "bridge", "tun", "veth", "dummy", "bonding", "macvlan", "vxlan", "ipip", "ip_gre", "sit", "ip6_tunnel", "vrf",
		"mpls_router", "mpls_iptunnel",
	}
	// Loaded at boot (each image loads those its kernel has as modules).
	bootModules = []string{"ipv6"}
)

// udhcpcScript sets the address, routes and DNS that udhcpc got.
const udhcpcScript = `#!/bin/sh
# udhcpc's default script: address, default route and DNS from the lease.
[ -n "$1" ] || { echo "Error: should be called from udhcpc"; exit 1; }
RESOLV_CONF=/etc/resolv.conf
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
renew|bound)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} dev "$interface"
	if [ -n "$router" ]; then
		while ip route del default dev "$interface" 2>/dev/null; do :; done
		metric=0
		for r in $router; do
			ip route add default via "$r" dev "$interface" metric $metric
			metric=$((metric+1))
		done
	fi
	if [ -n "$dns" ]; then
		: > "$RESOLV_CONF.$$"
		[ -n "$domain" ] && echo "search $domain" >> "$RESOLV_CONF.$$"
		for d in $dns; do echo "nameserver $d" >> "$RESOLV_CONF.$$"; done
		mv "$RESOLV_CONF.$$" "$RESOLV_CONF"
	fi
	;;
esac
exit 0
`

var busyboxFiles = map[string]string{
	"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
	"etc/shadow":   "root::19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
	"etc/group":    "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
	"etc/hostname": "busybox\n",
	"etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	"etc/profile": `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
PS1='\h:\w# '
alias ll='ls -l'
`,
	"etc/resolv.conf":     "",
	"etc/fstab":           "# the agent mounts /proc, /sys, /dev, /run and /tmp\n",
	"etc/shells":          "/bin/sh\n/bin/ash\n",
	"etc/modules":         strings.Join(bootModules, "\n") + "\n",
	"etc/network/.keep":   "",
	"etc/rc.d/README":     "Scripts named S* here run in order at boot with the argument \"start\", after the config CD was applied.\n",
	"etc/cloonix-release": "cloonix busybox image\n",
}

// busybox builds busybox.img.
func (b *builder) busybox() error {
	if err := ensurePackages("busybox-static", "linux-image-amd64", "user-mode-linux", "e2fsprogs", "kmod"); err != nil {
		return err
	}
	g, err := b.guestParts()
	if err != nil {
		return err
	}
	k, u := g.k, g.u
	inputs := g.inputs(map[string]string{
		"busybox": pkgVersion("busybox-static"),
		"recipe":  inputsKey(map[string]string{"q": strings.Join(busyboxQEMUModules, ","), "u": strings.Join(busyboxUMLModules, ","), "s": udhcpcScript, "f": fmt.Sprint(busyboxFiles)}),
	})
	out := filepath.Join(b.dir, "busybox.img")
	if b.upToDate("busybox", inputs) {
		logf("busybox.img: up to date")
		return nil
	}
	logf("busybox.img: busybox %s, kernel modules %s and UML %s", inputs["busybox"], k.Release, u.Release)
	stage, err := os.MkdirTemp(b.dir, ".stage-busybox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := stageBusybox(stage, g.agent); err != nil {
		return err
	}
	if err := g.installModules(stage, busyboxQEMUModules, busyboxUMLModules); err != nil {
		return err
	}
	if err := mkext4(out, stage, "busybox", 96<<20, inputsKey(inputs)); err != nil {
		return err
	}
	return b.writeStamp("busybox", inputs, "busybox.img")
}

// stageBusybox lays out the busybox root file system in dir.
func stageBusybox(dir, agent string) error {
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/rc.d", "etc/init.d", "etc/udhcpc", "root", "proc", "sys", "dev", "run", "tmp", "mnt", "home", "var/log", "var/tmp", "lib/modules", "usr/share/udhcpc", "usr/local/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "var/tmp"} {
		os.Chmod(filepath.Join(dir, d), 0o1777)
	}
	os.Chmod(filepath.Join(dir, "root"), 0o700)
	if err := copyFile(filepath.Join(dir, "bin/busybox"), "/bin/busybox", 0o755); err != nil {
		return fmt.Errorf("busybox: %v (apt-get install busybox-static)", err)
	}
	out, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %v", err)
	}
	for _, app := range strings.Fields(string(out)) {
		if app == "sbin/init" || app == "linuxrc" || app == "bin/busybox" {
			continue
		}
		p := filepath.Join(dir, app)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			return err
		}
	}
	if err := copyFile(filepath.Join(dir, "usr/sbin/cloonix-agent"), agent, 0o755); err != nil {
		return fmt.Errorf("agent: %v", err)
	}
	links := map[string]string{
		"sbin/init":                 "/usr/sbin/cloonix-agent",
		"etc/mtab":                  "/proc/mounts",
		"var/run":                   "/run",
		"etc/udhcpc/default.script": "/usr/share/udhcpc/default.script",
	}
	for l, t := range links {
		if err := os.Symlink(t, filepath.Join(dir, l)); err != nil {
			return err
		}
	}
	for name, content := range busyboxFiles {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if name == "etc/shadow" {
			mode = 0o600
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "usr/share/udhcpc/default.script"), []byte(udhcpcScript), 0o755)
}

// mkext4 makes an ext4 image of dir's content at out (atomically), with
// extra free bytes, without mounting anything (mkfs.ext4 -d). The UUID is
// derived from the inputs so rebuilding the same inputs gives the same
// file system identity.
func mkext4(out, dir, label string, extra int64, key string) error {
	var used int64
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			used += (info.Size() + 4095) &^ 4095
			used += 256 // inode
		}
		return nil
	})
	size := used + used/5 + extra
	size = (size + (1<<20 - 1)) &^ (1<<20 - 1)
	tmp := out + ".tmp"
	os.Remove(tmp)
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	f.Close()
	uuid := key[0:8] + "-" + key[8:12] + "-4" + key[13:16] + "-8" + key[17:20] + "-" + key[20:32]
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", label, "-U", uuid, "-d", dir, "-E", "root_owner=0:0", "-m", "0", tmp)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1700000000")
	if o, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4 -d %s: %v\n%s", dir, err, cmdout.Tail(o, 20))
	}
	return os.Rename(tmp, out)
}
