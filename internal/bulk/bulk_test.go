package bulk

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCpioNewc(t *testing.T) {
	var w cpioWriter
	w.dir("bin", 0o755)
	w.file("bin/x", []byte("hello"), 0o755)
	w.symlink("bin/sh", "x")
	w.trailer()
	b := w.buf.Bytes()
	if len(b)%4 != 0 {
		t.Fatal("not padded to 4")
	}
	// Walk the archive back.
	var names []string
	for off := 0; off < len(b); {
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		var size, nameLen int
		hexField := func(i int) int {
			var v int
			for _, c := range h[6+8*i : 6+8*i+8] {
				v = v*16 + strings.IndexRune("0123456789ABCDEF", c)
			}
			return v
		}
		size, nameLen = hexField(6), hexField(11)
		name := string(b[off+110 : off+110+nameLen-1])
		names = append(names, name)
		off += (110 + nameLen + 3) &^ 3
		off += (size + 3) &^ 3
		if name == "TRAILER!!!" {
			break
		}
	}
	if want := []string{"bin", "bin/x", "bin/sh", "TRAILER!!!"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	// The kernel's cpio (and GNU cpio) read it.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-t", "--quiet")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), "bin/x") {
			t.Fatalf("cpio -t: %v %q", err, out)
		}
	}
}

func TestUMLXstatePatch(t *testing.T) {
	// The shape of arch_init_registers in Debian's 6.1 linux.uml.
	code := []byte{0x48, 0xc7, 0x45, 0xe8, 0x88, 0x0a, 0x00, 0x00} // movq $0xa88,-0x18(%rbp)
	code = append(code, 0xba, 0x02, 0x02, 0x00, 0x00)              // mov $0x202,%edx
	code = append(code, 0x44, 0x89, 0xe6)                          // mov %r12d,%esi
	code = append(code, 0xbf, 0x04, 0x42, 0x00, 0x00)              // mov $0x4204,%edi
	code = append(code, 0x48, 0x85, 0xc0, 0x75, 0x10)              // test, jne
	code = append(code, 0xc7, 0x00, 0x01, 0x00, 0x00, 0x00)        // movl $1,(%rax)
	bin := append(append(bytes.Repeat([]byte{0x90}, 100), code...), bytes.Repeat([]byte{0xc3}, 100)...)
	off, size, err := umlXstatePatch(bin)
	if err != nil || size != 0xa88 || bin[off] != 1 || !bytes.Equal(bin[off-2:off+4], []byte{0xc7, 0x00, 0x01, 0, 0, 0}) {
		t.Fatalf("off %d size %#x err %v", off, size, err)
	}
	// A store far from any probe is not taken.
	if _, _, err := umlXstatePatch(append(bytes.Repeat([]byte{0x90}, 200), 0xc7, 0x00, 0x01, 0, 0, 0)); err == nil {
		t.Fatal("patched a random store")
	}
	// Two candidates: refuse rather than guess.
	if _, _, err := umlXstatePatch(append(append([]byte{}, bin...), bin...)); err == nil {
		t.Fatal("two probes accepted")
	}
}

func TestSelectModules(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/a/virtio_net.ko: kernel/b/net_failover.ko kernel/b/failover.ko\n" +
		"kernel/b/net_failover.ko: kernel/b/failover.ko\n" +
		"kernel/b/failover.ko:\n" +
		"kernel/net/8021q/8021q.ko: kernel/net/802/garp.ko\n" +
		"kernel/net/802/garp.ko:\n" +
		"kernel/drivers/e1000-x.ko:\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	got, err := selectModules(dir, []string{"virtio_net", "e1000_x", "no_such_builtin", "kernel/net/"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/b/failover.ko", "kernel/b/net_failover.ko", "kernel/a/virtio_net.ko", "kernel/drivers/e1000-x.ko", "kernel/net/802/garp.ko", "kernel/net/8021q/8021q.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestListAndKinds(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(dir, "busybox.img"), make([]byte, 4096), 0o644)
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xAA
	os.WriteFile(filepath.Join(dir, "cloud.img"), mbr, 0o644)
	os.WriteFile(filepath.Join(dir, "x.qcow2"), []byte("QFI"), 0o644)
	os.WriteFile(filepath.Join(dir, ".stamp-busybox.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	ims, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, im := range ims {
		got[im.Name] = im.Kind
	}
	want := map[string]string{"vmlinuz": "kernel", "busybox.img": "rootfs", "cloud.img": "disk", "x.qcow2": "disk"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := List(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "bulk build") {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestBuildRefusesUnknownImage(t *testing.T) {
	dir := t.TempDir()
	err := Build(dir, "windows")
	if err == nil || !strings.Contains(err.Error(), "busybox") {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatal("something was written")
	}
}

func TestStamps(t *testing.T) {
	b := &builder{dir: t.TempDir()}
	os.WriteFile(filepath.Join(b.dir, "x.img"), []byte("1"), 0o644)
	in := map[string]string{"a": "1"}
	if b.upToDate("x", in) {
		t.Fatal("up to date without a stamp")
	}
	if err := b.writeStamp("x", in, "x.img"); err != nil {
		t.Fatal(err)
	}
	if !b.upToDate("x", in) {
		t.Fatal("not up to date after its stamp")
	}
	if b.upToDate("x", map[string]string{"a": "2"}) {
		t.Fatal("changed input not seen")
	}
	time.Sleep(10 * time.Millisecond)
	os.WriteFile(filepath.Join(b.dir, "x.img"), []byte("22"), 0o644)
	if b.upToDate("x", in) {
		t.Fatal("changed output not seen")
	}
}

func TestInitrdScriptParses(t *testing.T) {
	// busybox sh -n checks the syntax of /init.
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no busybox")
	}
	cmd := exec.Command("/bin/busybox", "sh", "-n")
	cmd.Stdin = strings.NewReader(initScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cmd = exec.Command("/bin/busybox", "sh", "-n")
	cmd.Stdin = strings.NewReader(udhcpcScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc script: %v %s", err, out)
	}
}

// TestBuildTwice builds the kernels and busybox into a fresh directory
// twice: the second run is quick and changes nothing (CLOONIX_E2E=1).
func TestBuildTwice(t *testing.T) {
	if os.Getenv("CLOONIX_E2E") != "1" {
		t.Skip("builds real images; set CLOONIX_E2E=1")
	}
	agent := filepath.Join(t.TempDir(), AgentName)
	build := exec.Command("go", "build", "-o", agent, "cloonix/cmd/cloonix-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	AgentPath = agent
	defer func() { AgentPath = "" }()
	var log bytes.Buffer
	Log = &log
	defer func() { Log = nil }()
	dir := t.TempDir()
	if err := Build(dir, "kernels", "busybox"); err != nil {
		t.Fatal(err)
	}
	before := map[string]os.FileInfo{}
	for _, f := range []string{"vmlinuz", "initrd.img", "linux.uml", "busybox.img"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = st
	}
	// The initrd is a gzip'd newc cpio holding /init.
	data, _ := os.ReadFile(filepath.Join(dir, "initrd.img"))
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if !bytes.Contains(raw, []byte("init\x00")) || !bytes.Contains(raw, []byte("switch_root")) {
		t.Fatal("initrd lacks /init")
	}
	log.Reset()
	start := time.Now()
	if err := Build(dir, "kernels", "busybox"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second build took %v", d)
	}
	if !strings.Contains(log.String(), "up to date") {
		t.Errorf("second build said: %s", log.String())
	}
	for f, st := range before {
		now, _ := os.Stat(filepath.Join(dir, f))
		if now.ModTime() != st.ModTime() || now.Size() != st.Size() {
			t.Errorf("%s changed on the second build", f)
		}
	}
	// An ext4 file system, labelled, no partition table.
	img, _ := os.Open(filepath.Join(dir, "busybox.img"))
	sb := make([]byte, 2048)
	io.ReadFull(img, sb)
	img.Close()
	if binary.LittleEndian.Uint16(sb[1024+0x38:]) != 0xEF53 || !bytes.HasPrefix(sb[1024+0x78:], []byte("busybox")) {
		t.Fatal("busybox.img is not an ext4 file system labelled busybox")
	}
	ims, err := List(dir)
	if err != nil || len(ims) != 4 { // busybox.img, initrd.img, linux.uml, vmlinuz
		t.Fatalf("list: %v %v", ims, err)
	}
}

func TestExtractPVH(t *testing.T) {
	if _, err := extractPVH([]byte("not a kernel at all")); err == nil {
		t.Fatal("garbage accepted")
	}
	// A payload that decompresses to something other than a PVH ELF.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("\x7fELF but not really"))
	zw.Close()
	if _, err := extractPVH(append([]byte("setup code"), gz.Bytes()...)); err == nil {
		t.Fatal("a non-ELF payload accepted")
	}
	k, err := debianKernel()
	if err != nil {
		t.Skip("no Debian kernel installed")
	}
	bz, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		t.Skip(err)
	}
	out, err := extractPVH(bz)
	if err != nil {
		t.Fatalf("%s: %v", k.Vmlinuz, err)
	}
	if len(out) < 2*len(bz) {
		t.Fatalf("uncompressed kernel of %d bytes from a %d-byte bzImage", len(out), len(bz))
	}
}
