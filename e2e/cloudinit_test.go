package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 4 item 6: a stock cloud image, with no agent of ours, configures
// itself from the NoCloud meta-data/user-data on our CD, and a bootable
// disk (partition table and bootloader) boots from its own disk.

// cloudImageRecipe builds a small Debian cloud image the way Debian's own
// are set up (cloud-init with the NoCloud datasource, serial console on
// ttyS0, the cloud kernel), as a bootable disk: MBR, a FAT boot partition
// with syslinux, an ext4 root. Nothing needs loop devices or mounts.
// $1 is the qcow2 to write. The recipe's hash keys the cache.
const cloudImageRecipe = `set -eu
out=$1
w=$out.build
rm -rf "$w"; mkdir -p "$w"
trap 'rm -rf "$w"' EXIT
root=$w/root
mmdebstrap --quiet --variant=apt \
  --include=linux-image-cloud-amd64,cloud-init,systemd-sysv,udev,openssh-server,initramfs-tools,ifupdown,isc-dhcp-client \
  bookworm "$root"
echo 'datasource_list: [ NoCloud, None ]' > "$root/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
echo 'LABEL=root / ext4 rw,discard,errors=remount-ro 0 1' > "$root/etc/fstab"
: > "$root/etc/machine-id"
rm -f "$root/etc/hostname"
k=$(ls "$root"/boot/vmlinuz-* | head -1); i=$(ls "$root"/boot/initrd.img-* | head -1)
mkfs.vfat -n BOOT -C "$w/boot.fat" 131072 >/dev/null
cat > "$w/syslinux.cfg" <<CFG
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd.img root=LABEL=root ro console=tty0 console=ttyS0,115200
CFG
mcopy -i "$w/boot.fat" "$k" ::/vmlinuz
mcopy -i "$w/boot.fat" "$i" ::/initrd.img
mcopy -i "$w/boot.fat" "$w/syslinux.cfg" ::/syslinux.cfg
mkfs.ext4 -q -L root -d "$root" "$w/root.ext4" 2G
truncate -s $((2048*512 + 128*1024*1024 + 2*1024*1024*1024)) "$w/disk"
printf 'label: dos\nstart=2048, size=262144, type=6, bootable\nstart=264192, type=83\n' | sfdisk -q "$w/disk"
dd if="$w/boot.fat" of="$w/disk" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$w/root.ext4" of="$w/disk" bs=512 seek=264192 conv=notrunc,sparse status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$w/disk" bs=440 count=1 conv=notrunc status=none
syslinux --install --offset $((2048*512)) "$w/disk"
qemu-img convert -O qcow2 "$w/disk" "$out.tmp"
mv "$out.tmp" "$out"
`

// Host programs the recipe runs, and their Debian packages.
var cloudImageTools = map[string]string{
	"mmdebstrap": "mmdebstrap", "mkfs.vfat": "dosfstools", "mcopy": "mtools",
	"mkfs.ext4": "e2fsprogs", "sfdisk": "fdisk", "syslinux": "syslinux",
	"qemu-img": "qemu-utils", "debugfs": "e2fsprogs",
}

// cloudImage returns the cached image, building it on first use (about a
// minute, mostly downloads). CLOONIX_E2E_CACHE overrides the cache dir.
func cloudImage(t *testing.T) string {
	t.Helper()
	for prog, pkg := range cloudImageTools {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s not found: apt-get install %s", prog, pkg)
		}
	}
	if _, err := os.Stat("/usr/lib/syslinux/mbr/mbr.bin"); err != nil {
		t.Fatal("/usr/lib/syslinux/mbr/mbr.bin missing: apt-get install syslinux-common")
	}
	dir := os.Getenv("CLOONIX_E2E_CACHE")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(c, "cloonix-e2e")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(cloudImageRecipe))
	p := filepath.Join(dir, "debian-cloud-"+hex.EncodeToString(sum[:6])+".qcow2")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Logf("building %s (cached for later runs)", p)
	out, err := exec.Command("bash", "-c", cloudImageRecipe, "recipe", p).CombinedOutput()
	if err != nil {
		t.Fatalf("building the cloud image: %v\n%s", err, lastLines(string(out), 40))
	}
	return p
}

// TestVMCloudInit boots the stock cloud image from its own disk. Its
// cloud-init reads our CD: the hostname becomes the VM name, root gets the
// config's rsa_public_key, demo files are written. A per-boot script (a
// demo file itself) prints what cloud-init did on the console. The guest
// has no agent, so it stays "booting".
func TestVMCloudInit(t *testing.T) {
	needE2E(t)
	img := cloudImage(t)
	dir := t.TempDir()
	key := fmt.Sprintf("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC%d cloonix-e2e@%s", time.Now().UnixNano(), t.Name())
	keyFile := filepath.Join(dir, "id_rsa.pub")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	demo := filepath.Join(dir, "demo")
	script := filepath.Join(demo, "files_to_add_in_CI1", "var", "lib", "cloud", "scripts", "per-boot", "cloonix-proof")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Cloud-init's final stage runs it: after write_files and the keys.
	proof := "#!/bin/sh\n{ echo \"CLOONIX-PROOF host=$(hostname) key=$(cat /root/.ssh/authorized_keys | tr -d '\\n') file=$(cat /etc/cloonix-all)\"; } > /dev/ttyS0\n"
	if err := os.WriteFile(script, []byte(proof), 0o755); err != nil {
		t.Fatal(err)
	}
	all := filepath.Join(demo, "files_to_add_in_all_targets", "etc")
	if err := os.MkdirAll(all, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(all, "cloonix-all"), []byte("from-all-targets\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	l := NewLab(t, "<no_nat>true</no_nat><rsa_public_key>"+keyFile+"</rsa_public_key>")
	events, err := l.Client().Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	// No agent will answer: the boot timeout is reported, the guest
	// keeps booting.
	l.MustRun("ctrl", "add", "vm", "CI1", "--type", "kvm", "--mem", "512", "--eth", "0",
		"--rootfs", img, "--demo", demo, "--boot-timeout", "20")
	kvmLog, _ := os.ReadFile(filepath.Join(l.Dir, "CI1", "kvm.log"))
	if strings.Contains(string(kvmLog), "-kernel") {
		t.Fatalf("a bootable disk was booted with a kernel: %s", kvmLog)
	}
	start := time.Now()
	want := "CLOONIX-PROOF host=CI1 key=" + key + " file=from-all-targets"
	Eventually(t, 5*time.Minute, "cloud-init's proof on the console", func() error {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "CI1", "console.log"))
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("console:\n%s", lastLines(string(b), 15))
		}
		return nil
	})
	t.Logf("cloud-init done %v after start", time.Since(start).Round(time.Second))
	Eventually(t, time.Minute, "the login prompt with the new hostname", func() error {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "CI1", "console.log"))
		if !strings.Contains(string(b), "CI1 login:") {
			return fmt.Errorf("console:\n%s", lastLines(string(b), 5))
		}
		return nil
	})
	// The event came long ago (20 s into the boot): it is queued.
	deadline := time.After(10 * time.Second)
	for timedOut := false; !timedOut; {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event stream closed before a vm_boot_timeout for CI1")
			}
			timedOut = e.Type == "vm_boot_timeout" && e.Attrs["name"] == "CI1" && e.Attrs["console"] == filepath.Join(l.Dir, "CI1", "console.log")
		case <-deadline:
			t.Fatal("no vm_boot_timeout event for CI1 naming its console")
		}
	}
	// exec needs our agent: it fails, saying the guest is booting.
	if out, err := l.Run("exec", "--timeout", "3", "CI1", "--", "true"); err == nil || !strings.Contains(out, "booting") {
		t.Fatalf("exec in an agentless guest: %v %s", err, out)
	}
	if v := vmOf(l.List(), "CI1"); v == nil || v.State != "booting" {
		t.Fatalf("an agentless guest listed as %+v", v)
	}
}
