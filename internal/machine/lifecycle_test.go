package machine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeUMLCow makes a version 3 COW file over backing whose sectors in
// dirty hold the byte 0xC0+sector; it mirrors UML's init_cow_file.
func writeUMLCow(t *testing.T, path, backing string, size, sector, align int64, dirty []int64) {
	t.Helper()
	h := make([]byte, cowV3Header)
	be := binary.BigEndian
	be.PutUint32(h[0:], cowMagic)
	be.PutUint32(h[4:], 3)
	be.PutUint64(h[12:], uint64(size))
	be.PutUint32(h[20:], uint32(sector))
	be.PutUint32(h[24:], uint32(align))
	copy(h[32:], backing)
	bitmapOff := roundUp(cowV3Header, align)
	nsec := (size + sector - 1) / sector
	bitmap := make([]byte, (nsec+7)/8)
	dataOff := roundUp(bitmapOff+int64(len(bitmap)), align)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(h, 0)
	for _, s := range dirty {
		bitmap[s/8] |= 1 << (s % 8)
		f.WriteAt(bytes.Repeat([]byte{byte(0xC0 + s)}, int(sector)), dataOff+s*sector)
	}
	f.WriteAt(bitmap, bitmapOff)
}

func TestMergeUMLCow(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name                string
		size, sector, align int64
		dirty               []int64
	}{
		{"none", 64 * 512, 512, 512, nil},
		{"some", 64 * 512, 512, 4096, []int64{0, 1, 7, 8, 9, 63}},
		{"all", 16 * 512, 512, 512, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{"partial last sector", 10*512 + 100, 512, 512, []int64{3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			back := filepath.Join(dir, c.name+".img")
			ref := make([]byte, c.size)
			for i := range ref {
				ref[i] = byte(i % 251)
			}
			if err := os.WriteFile(back, ref, 0o644); err != nil {
				t.Fatal(err)
			}
			cow := filepath.Join(dir, c.name+".cow")
			writeUMLCow(t, cow, back, c.size, c.sector, c.align, c.dirty)
			out := filepath.Join(dir, c.name+".out")
			var last int64
			if err := MergeUMLCow(cow, out, func(done, total int64) { last = done }); err != nil {
				t.Fatal(err)
			}
			if last != c.size {
				t.Errorf("progress ended at %d of %d", last, c.size)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), ref...)
			for _, s := range c.dirty {
				for i := s * c.sector; i < min((s+1)*c.sector, c.size); i++ {
					want[i] = byte(0xC0 + s)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("merged image differs from the COW's view")
			}
			if b, _ := os.ReadFile(back); !bytes.Equal(b, ref) {
				t.Fatal("the backing file changed")
			}
			if err := MergeUMLCow(cow, out, nil); err == nil {
				t.Fatal("merge over an existing file worked")
			}
		})
	}
}

func TestReadUMLCowBad(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", []byte("OOOM"), "header"},
		{"magic", make([]byte, cowV3Header), "magic"},
	} {
		if _, err := readUMLCow(bytes.NewReader(c.b)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func FuzzReadUMLCow(f *testing.F) {
	h := make([]byte, cowV3Header)
	binary.BigEndian.PutUint32(h, cowMagic)
	binary.BigEndian.PutUint32(h[4:], 3)
	f.Add(h)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := readUMLCow(bytes.NewReader(b))
		if err == nil && (c.sectorSize <= 0 || c.dataOff < c.bitmapOff) {
			t.Fatalf("accepted a header it cannot use: %+v", c)
		}
	})
}

// TestQcow2BootSector: a qcow2 made of a bare filesystem is told from one
// made of a bootable disk (ctrl save of QEMU guests writes the former).
func TestQcow2BootSector(t *testing.T) {
	qi, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("no qemu-img")
	}
	dir := t.TempDir()
	fs := make([]byte, 1<<20)
	copy(fs[1080:], []byte{0x53, 0xef}) // an ext superblock magic, no MBR
	disk := make([]byte, 1<<20)
	disk[510], disk[511] = 0x55, 0xaa
	for name, raw := range map[string][]byte{"fs": fs, "disk": disk} {
		r := filepath.Join(dir, name+".raw")
		q := filepath.Join(dir, name+".qcow2")
		if err := os.WriteFile(r, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(qi, "convert", "-O", "qcow2", r, q).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		img, err := ResolveImage(dir, q)
		if err != nil {
			t.Fatal(err)
		}
		if img.Format != "qcow2" || img.Disk != (name == "disk") {
			t.Errorf("%s: %+v", name, img)
		}
	}
	// An overlay (a backing file) cannot be read simply: a disk, as before.
	ov := filepath.Join(dir, "ov.qcow2")
	if out, err := exec.Command(qi, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(dir, "fs.qcow2"), ov).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, ok := qcow2BootSector(ov); ok {
		t.Error("an overlay's boot sector was read")
	}
}

// fakeQMP serves QMP on a unix socket: a greeting, capabilities, then
// one command whose request it records; it answers with an event first.
func fakeQMP(t *testing.T, sock string, fail bool) <-chan map[string]any {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan map[string]any, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r := bufio.NewReader(c)
			c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
			for i := 0; i < 2; i++ {
				line, err := r.ReadBytes('\n')
				if err != nil {
					break
				}
				var m map[string]any
				json.Unmarshal(line, &m)
				c.Write([]byte(`{"event": "NIC_RX_FILTER_CHANGED", "data": {}}` + "\n"))
				if i == 1 {
					got <- m
					if fail {
						c.Write([]byte(`{"error": {"class": "DeviceNotFound", "desc": "Device 'nic9' not found"}}` + "\n"))
						continue
					}
				}
				c.Write([]byte(`{"return": {}}` + "\n"))
			}
			c.Close()
		}
	}()
	return got
}

func TestQMPCall(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.sock")
	got := fakeQMP(t, ok, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := qmpCall(ctx, ok, "set_link", map[string]any{"name": "nic0", "up": false}); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if m["execute"] != "set_link" || m["arguments"].(map[string]any)["name"] != "nic0" || m["arguments"].(map[string]any)["up"] != false {
		t.Fatalf("QEMU got %v", m)
	}
	bad := filepath.Join(dir, "bad.sock")
	fakeQMP(t, bad, true)
	if err := qmpCall(ctx, bad, "set_link", map[string]any{"name": "nic9", "up": true}); err == nil || !strings.Contains(err.Error(), "nic9") {
		t.Fatalf("QMP error: %v", err)
	}
	if err := qmpCall(ctx, filepath.Join(dir, "none.sock"), "stop", nil); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("no QEMU: %v", err)
	}
}

// TestReaper: the groups still listed when the pipe closes are killed;
// those reported gone are left alone.
func TestReaper(t *testing.T) {
	start := func() *exec.Cmd {
		c := exec.Command("sleep", "60")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	a, b := start(), start()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { RunReaper(r); close(done) }()
	w.Write([]byte("+" + itoa(a.Process.Pid) + "\n+" + itoa(b.Process.Pid) + "\n-" + itoa(b.Process.Pid) + "\nnoise\n+1\n"))
	w.Close()
	<-done
	if err := a.Wait(); err == nil {
		t.Fatal("a listed group was not killed")
	}
	if err := b.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("a group reported gone was killed: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
