package bulk

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"cloonix/internal/guest"
)

// debianPackages go into debian-frr.img (bookworm, minbase variant).
var debianPackages = []string{
	"systemd", "systemd-sysv", "udev", "kmod", "dbus",
	"frr", "frr-pythontools", "iproute2", "iputils-ping", "tcpdump", "openssh-server",
	"busybox", "udhcpc", "procps", "net-tools", "traceroute", "ethtool", "less", "vim-tiny", "netcat-openbsd",
	"iperf3", // bench/guests measures guest-to-guest TCP with it
}

// Modules for debian-frr: all of net/ (FRR uses MPLS, VRF, bonding ...),
// the NICs QEMU emulates, and the usual virtual links.
var (
	debianQEMUModules = append([]string{"kernel/net/", "isofs", "vrf", "geneve", "ipvlan", "macvtap", "team", "nlmon", "wireguard"}, busyboxQEMUModules...)
	debianUMLModules  = append([]string{"kernel/net/", "isofs", "vrf", "geneve", "ipvlan", "team", "nlmon", "wireguard"}, busyboxUMLModules...)
)

// debianFiles are written into the image (relative to /).
var debianFiles = map[string]string{
	"etc/systemd/system/cloonix-apply.service": `[Unit]
Description=cloonix: eth names and the config CD (hostname, ssh key, demo files)
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=sysinit.target network-pre.target frr.service ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/cloonix-agent --apply
StandardOutput=journal+console
StandardError=journal+console
Environment=` + guest.NoAVXGodebug + `

[Install]
WantedBy=sysinit.target
`,
	"etc/systemd/system/cloonix-agent.service": `[Unit]
Description=cloonix: run /etc/rc.d/S* and serve the agent line
After=cloonix-apply.service network.target frr.service
Wants=cloonix-apply.service

[Service]
ExecStart=/usr/sbin/cloonix-agent --serve
Restart=always
RestartSec=1
StandardOutput=journal+console
StandardError=journal+console
Environment=` + guest.NoAVXGodebug + `

[Install]
WantedBy=multi-user.target
`,
	// A root shell on the console, QEMU's ttyS0 or UML's con0 alike.
	"etc/systemd/system/console-getty.service.d/cloonix.conf": `[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud console 115200,38400,9600 $TERM
`,
	// Host keys differ per VM: made at first boot (ed25519 only: an RSA
	// key costs seconds of emulated CPU).
	"etc/systemd/system/ssh.service.d/cloonix.conf": `[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -f /etc/ssh/ssh_host_ed25519_key || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
`,
	"etc/ssh/sshd_config.d/cloonix.conf":       "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n",
	"etc/systemd/system.conf.d/cloonix.conf":   "[Manager]\nDefaultEnvironment=" + guest.NoAVXGlibc + " " + guest.NoAVXGodebug + " " + guest.NoAVXOpenSSL + "\nDefaultTimeoutStopSec=5s\n",
	"etc/systemd/journald.conf.d/cloonix.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n",
	"etc/environment":                          guest.NoAVXGlibc + "\n" + guest.NoAVXOpenSSL + "\n",
	"etc/fstab":                                "LABEL=debian-frr / ext4 defaults,noatime 0 0\n",
	"etc/hostname":                             "debian-frr\n",
	"etc/hosts":                                "127.0.0.1\tlocalhost\n127.0.1.1\tdebian-frr\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	"etc/rc.d/README":                          "Scripts named S* here run in order at boot with the argument \"start\", after the config CD was applied.\n",
	"etc/modules-load.d/cloonix.conf":          "# loaded at boot where they are modules\nipv6\n8021q\n",
	"etc/sysctl.d/90-cloonix.conf":             "# routers forward\nnet.ipv4.ip_forward=1\nnet.ipv6.conf.all.forwarding=1\n",
	"etc/cloonix-release":                      "cloonix debian-frr image\n",
}

// Units switched on and off (links under /etc/systemd/system).
var (
	debianEnable = map[string]string{
		"sysinit.target.wants/cloonix-apply.service":    "/etc/systemd/system/cloonix-apply.service",
		"multi-user.target.wants/cloonix-agent.service": "/etc/systemd/system/cloonix-agent.service",
		"getty.target.wants/console-getty.service":      "/lib/systemd/system/console-getty.service",
	}
	debianMask = []string{
		"serial-getty@ttyS0.service", "serial-getty@ttyS1.service", "getty@tty1.service", "getty@tty0.service",
		"apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer", "fstrim.timer",
		"e2scrub_reap.service", "systemd-timesyncd.service", "systemd-networkd-wait-online.service",
		// Each costs a process start or more, which emulated CPUs feel.
		"modprobe@drm.service", "modprobe@efi_pstore.service", "modprobe@fuse.service", "modprobe@dm_mod.service",
		"modprobe@loop.service", "modprobe@configfs.service", "kmod-static-nodes.service",
		"sys-kernel-debug.mount", "sys-kernel-tracing.mount", "dev-hugepages.mount",
		"systemd-logind.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
		"systemd-pstore.service", "systemd-journal-flush.service", "systemd-random-seed.service",
		"ldconfig.service", "systemd-hwdb-update.service", "systemd-journal-catalog-update.service",
		"systemd-machine-id-commit.service", "dpkg-db-backup.timer", "logrotate.timer",
	}
)

// debianFRR builds debian-frr.img: a cached mmdebstrap base, plus the
// agent, the kernel modules and our configuration.
func (b *builder) debianFRR() error {
	if err := ensurePackages("mmdebstrap", "e2fsprogs", "kmod", "linux-image-amd64", "user-mode-linux"); err != nil {
		return err
	}
	base, baseKey, err := b.debianBase()
	if err != nil {
		return err
	}
	k := b.kernel
	if k == nil {
		if k, err = debianKernel(); err != nil {
			return err
		}
	}
	u, err := umlKernel()
	if err != nil {
		return err
	}
	agent, agentSum, err := b.agentBinary()
	if err != nil {
		return err
	}
	inputs := map[string]string{
		"builder": builderVersion,
		"base":    baseKey,
		"kernel":  k.Pkg + "=" + k.PkgVer,
		"uml":     u.Release + "=" + u.PkgVer,
		"agent":   agentSum,
		"recipe":  inputsKey(map[string]string{"f": fmt.Sprint(debianFiles), "e": fmt.Sprint(debianEnable), "m": fmt.Sprint(debianMask), "q": fmt.Sprint(debianQEMUModules), "u": fmt.Sprint(debianUMLModules)}),
	}
	if b.upToDate("debian-frr", inputs) {
		logf("debian-frr.img: up to date")
		return nil
	}
	logf("debian-frr.img: assembling (kernel modules %s and UML %s, the agent)", k.Release, u.Release)
	stage, err := os.MkdirTemp(b.dir, ".stage-debian-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := run("tar", "-C", stage, "--numeric-owner", "-xpf", base); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(stage, "usr/sbin/cloonix-agent"), agent, 0o755); err != nil {
		return err
	}
	for name, content := range debianFiles {
		p := filepath.Join(stage, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		os.Remove(p)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	os.MkdirAll(filepath.Join(stage, "etc/rc.d"), 0o755)
	sd := filepath.Join(stage, "etc/systemd/system")
	for link, target := range debianEnable {
		p := filepath.Join(sd, link)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	for _, unit := range debianMask {
		p := filepath.Join(sd, unit)
		os.Remove(p)
		if err := os.Symlink("/dev/null", p); err != nil {
			return err
		}
	}
	// Root logs in on the console without a password (autologin) and
	// over ssh with the key from the config CD only.
	if err := run("chroot", stage, "passwd", "-d", "root"); err != nil {
		return err
	}
	for _, g := range []string{"ssh_host_*"} {
		keys, _ := filepath.Glob(filepath.Join(stage, "etc/ssh", g))
		for _, k := range keys {
			os.Remove(k)
		}
	}
	os.Remove(filepath.Join(stage, "etc/machine-id"))
	os.WriteFile(filepath.Join(stage, "etc/machine-id"), nil, 0o444) // systemd makes one per boot
	qm, err := selectModules(k.ModDir, debianQEMUModules)
	if err != nil {
		return err
	}
	if err := installModules(stage, k.Release, k.ModDir, qm); err != nil {
		return err
	}
	um, err := selectModules(u.ModDir, debianUMLModules)
	if err != nil {
		return err
	}
	if err := installModules(stage, u.Release, u.ModDir, um); err != nil {
		return err
	}
	if err := mkext4(filepath.Join(b.dir, "debian-frr.img"), stage, "debian-frr", 512<<20, inputsKey(inputs)); err != nil {
		return err
	}
	return b.writeStamp("debian-frr", inputs, "debian-frr.img")
}

// debianBase returns the cached mmdebstrap tarball, making it when its
// package list changed. It lives in <bulk_dir>/.cache (not an image).
func (b *builder) debianBase() (string, string, error) {
	cache := filepath.Join(b.dir, ".cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", "", err
	}
	tarball := filepath.Join(cache, "debian-frr-base.tar")
	sources := "/etc/apt/sources.list.d/debian.sources"
	src := ""
	if data, err := os.ReadFile(sources); err == nil {
		src = string(data)
	}
	inputs := map[string]string{"builder": builderVersion, "packages": strings.Join(debianPackages, ","), "sources": inputsKey(map[string]string{"s": src})}
	key := inputsKey(inputs)
	stampFile := tarball + ".key"
	if old, err := os.ReadFile(stampFile); err == nil && strings.TrimSpace(string(old)) == key+" "+fileID(tarball) {
		return tarball, key, nil
	}
	logf("debian-frr: mmdebstrap bookworm (downloads about 100 MB once)")
	args := []string{"--variant=minbase", "--mode=root", "--format=tar", "--include=" + strings.Join(debianPackages, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"bookworm", tarball + ".tmp"}
	if src != "" {
		args = append(args, sources)
	}
	cmd := exec.Command("mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tarball + ".tmp")
		return "", "", fmt.Errorf("mmdebstrap: %v\n%s", err, tail(out, 30))
	}
	if err := os.Rename(tarball+".tmp", tarball); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(stampFile, []byte(key+" "+fileID(tarball)+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return tarball, key, nil
}
