package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestCntLanRule loads demos/lan_rule with its three guests switched to
// container nodes: the demo's rc.d scripts give the addresses, A-B and
// B-C ping, A-C do not; attaching A:eth0 to lan_two live lets A ping C.
func TestCntLanRule(t *testing.T) {
	needRunc(t)
	demo := copyDemo(t, absPath(t, "../demos/lan_rule"))
	top := filepath.Join(demo, "topology")
	b, err := os.ReadFile(top)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "<type> UML </type>", "<type> CNT </type>")
	if strings.Count(s, "CNT") != 3 {
		t.Fatalf("demo topology not as expected:\n%s", b)
	}
	os.WriteFile(top, []byte(s), 0o644)
	l := NewLab(t, "<no_nat>true</no_nat>")
	if out := l.load(demo); !strings.Contains(out, "lab ready: 3 guests") {
		t.Errorf("load output:\n%s", out)
	}
	l.allRunning("A", "B", "C")
	for _, v := range l.List().VMs {
		if v.Type != "cnt" {
			t.Fatalf("%s is %s", v.Name, v.Type)
		}
	}
	// /etc/hosts came from files_to_add_in_all_targets: names resolve.
	if !l.pings("A", "B") || !l.pings("B", "C") || !l.pings("C", "10.0.0.2") {
		t.Fatal("A-B or B-C do not ping")
	}
	if l.pings("A", "C") {
		t.Fatal("A pings C: they share no lan")
	}
	before := l.pids()
	l.MustRun("ctrl", "attach", "A:eth0", "lan_two")
	if !l.pings("A", "C") {
		t.Fatal("A cannot ping C after A:eth0 joined lan_two")
	}
	if after := l.pids(); after["A"] != before["A"] || after["C"] != before["C"] {
		t.Fatalf("a node restarted: %v -> %v", before, after)
	}
}

// busyboxLayer is a one-layer image tree: the host's static busybox, its
// applets as links, a passwd file.
func busyboxLayer(t *testing.T) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("the host has no /bin/busybox (apt-get install busybox-static)")
	}
	list, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	add := func(h *tar.Header, data []byte) {
		for d := filepath.Dir(h.Name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755})
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "root", "run", "etc/rc.d"} {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		dirs[d] = true
	}
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	for _, app := range strings.Fields(string(list)) {
		if app != "bin/busybox" {
			add(&tar.Header{Name: app, Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox"}, nil)
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n")
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))}, passwd)
	tw.Close()
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// TestCntOCIImage starts cnt nodes from locally built images, one a
// docker save archive, one an OCI layout (different environments, so
// different image IDs: each is flattened), which exec and ping each other.
func TestCntOCIImage(t *testing.T) {
	needRunc(t)
	layer := busyboxLayer(t)
	dir := t.TempDir()
	image := func(tag string) v1.Image {
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err == nil {
			img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "IMG=" + tag}})
		}
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	archiveImg, layoutImg := image("archive"), image("layout")
	archive := filepath.Join(dir, "busybox.tar")
	tag, _ := name.NewTag("cloonix/e2e-busybox:1")
	if err := tarball.WriteToFile(archive, tag, archiveImg); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err == nil {
		err = lp.AppendImage(layoutImg)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The flattened trees go to bulk_dir/.cnt like any image's; they are
	// this test's own, so it removes them (the next run flattens again).
	for _, img := range []v1.Image{archiveImg, layoutImg} {
		id, _ := img.ConfigName()
		t.Cleanup(func() { os.RemoveAll(filepath.Join(bulkDir, ".cnt", "oci-"+id.Hex[:24])) })
	}
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"oa"}, "--type", "cnt", "--rootfs", "docker-archive:"+archive)
	l.addVMs([]string{"ob"}, "--type", "cnt", "--rootfs", "oci:"+filepath.Join(dir, "layout"))
	for i, n := range []string{"oa", "ob"} {
		l.MustRun("ctrl", "attach", n+":eth0", "lan1")
		l.vmMust(n, "ip", "addr", "add", "10.81.0."+string(rune('1'+i))+"/24", "dev", "eth0")
	}
	for n, want := range map[string]string{"oa": "IMG=archive", "ob": "IMG=layout"} {
		env := l.vmMust(n, "sh", "-c", `tr '\0' '\n' < /proc/1/environ`)
		if !strings.Contains(env, want+"\n") {
			t.Errorf("%s: init's environment lacks %s:\n%s", n, want, env)
		}
	}
	if _, _, code := l.vmRun("oa", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if !l.canPing("oa", "10.81.0.2") || !l.canPing("ob", "10.81.0.1") {
		t.Fatal("the OCI image nodes do not ping each other")
	}
}

// TestCntTCP moves a file over TCP from a cnt node to another (TSO super
// frames cross the switch whole between node taps) and to a UML guest
// (the switch cuts them into ordinary frames with full checksums): both
// copies arrive intact.
func TestCntTCP(t *testing.T) {
	needRunc(t)
	needImages(t, "linux.uml")
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.addVMs([]string{"ta", "tb"}, "--type", "cnt")
	l.addVMs([]string{"tu"}, "--type", "uml")
	for i, n := range []string{"ta", "tb", "tu"} {
		l.MustRun("ctrl", "attach", n+":eth0", "lan1")
		l.vmMust(n, "ip", "addr", "add", "10.82.0."+string(rune('1'+i))+"/24", "dev", "eth0")
		l.vmMust(n, "ip", "link", "set", "eth0", "up")
	}
	l.vmMust("ta", "sh", "-c", "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/d bs=1M count=16 2>/dev/null && httpd -p 8080 -h /tmp/www")
	sum := strings.Fields(l.vmMust("ta", "md5sum", "/tmp/www/d"))[0]
	for _, n := range []string{"tb", "tu"} {
		if !l.canPing(n, "10.82.0.1") {
			t.Fatalf("%s cannot ping ta", n)
		}
		out, errs, code := l.vmRun(n, "sh", "-c", "wget -q -O - http://10.82.0.1:8080/d | md5sum")
		if code != 0 || !strings.HasPrefix(out, sum) {
			t.Errorf("%s fetched a file with md5 %q (exit %d, %s), want %s", n, out, code, errs, sum)
		}
	}
	// The 16 MB reached tb mostly in super frames: frames of more than
	// an MTU on average, where ordinary frames would average < 1518 B.
	for _, p := range l.List().Ports {
		if p.Name == "tb:eth0" && (p.Counters.TxFrames == 0 || p.Counters.TxBytes/p.Counters.TxFrames < 3000) {
			t.Errorf("tb:eth0 got %d frames, %d bytes: no super frames", p.Counters.TxFrames, p.Counters.TxBytes)
		}
	}
}
