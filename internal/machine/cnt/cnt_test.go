package cnt

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, kind, arg, err string
	}{
		{"", RefBulk, "busybox", ""},
		{"busybox", RefBulk, "busybox", ""},
		{"debian-frr.img", RefBulk, "debian-frr", ""},
		{"/srv/tree/", RefDir, "/srv/tree", ""},
		{"oci:/srv/oci", RefOCI, "/srv/oci", ""},
		{"docker-archive:/tmp/a.tar", RefDockerArchive, "/tmp/a.tar", ""},
		{"docker:frrouting/frr:v8.4.0", RefDocker, "frrouting/frr:v8.4.0", ""},
		{"podman:alpine@sha256:abc", RefDocker, "alpine@sha256:abc", ""},
		{"oci:relative", "", "", "absolute path"},
		{"docker:", "", "", "wants an image name"},
		{"docker:-x", "", "", "may not start"},
		{"docker:a b", "", "", "not allowed"},
		{"frrouting/frr:v8", "", "", "docker:frrouting/frr:v8"},
		{"zip:/x", "", "", "unknown kind"},
		{"tree/sub", "", "", "absolute path"},
		{"..", "", "", "not a bulk image"},
		{"a\nb", "", "", "control characters"},
	} {
		r, err := ParseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r.Kind != tc.kind || r.Arg != tc.arg {
			t.Errorf("%q: %+v %v, want %s %s", tc.in, r, err, tc.kind, tc.arg)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"busybox", "/a/../b", "oci:/x", "docker:a/b:c", "docker-archive:/f", "x:y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		switch r.Kind {
		case RefDir, RefOCI, RefDockerArchive:
			if !filepath.IsAbs(r.Arg) || filepath.Clean(r.Arg) != r.Arg {
				t.Fatalf("%q: path %q", s, r.Arg)
			}
		case RefBulk:
			if strings.ContainsAny(r.Arg, "/\x00") || r.Arg == ".." {
				t.Fatalf("%q: bulk name %q", s, r.Arg)
			}
		case RefDocker:
			if strings.HasPrefix(r.Arg, "-") || strings.ContainsAny(r.Arg, " \x00") {
				t.Fatalf("%q: image %q", s, r.Arg)
			}
		default:
			t.Fatalf("%q: kind %q", s, r.Kind)
		}
		if again, err := ParseRef(r.String()); err != nil || again != r {
			t.Fatalf("%q: %v does not read back (%+v, %v)", s, r, again, err)
		}
	})
}

func TestMakeSpec(t *testing.T) {
	s := makeSpec(bundleSpec{Name: "r1", RootPath: "/w/r1/rootfs", CfgDir: "/w/r1/cloonix", Env: []string{"PATH=/opt/bin", "X=1"},
		Shim: []string{"/usr/bin/systemctl"}, Mem: 64, CPU: 2, Cgroup: "/cloonix/ab/r1"})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Hostname != "r1" || back.Root.Path != "/w/r1/rootfs" || back.Linux.CgroupsPath != "/cloonix/ab/r1" {
		t.Fatalf("spec %+v", back)
	}
	if *back.Linux.Resources.Memory.Limit != 64<<20 || *back.Linux.Resources.CPU.Quota != 200000 || *back.Linux.Resources.CPU.Period != 100000 {
		t.Fatalf("resources %+v", back.Linux.Resources)
	}
	if !strings.Contains(strings.Join(back.Process.Env, " "), "PATH=/opt/bin") || !strings.Contains(strings.Join(back.Process.Env, " "), "X=1") {
		t.Fatalf("env %v", back.Process.Env)
	}
	ns := map[specs.LinuxNamespaceType]bool{}
	for _, n := range back.Linux.Namespaces {
		ns[n.Type] = n.Path == ""
	}
	for _, n := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.UTSNamespace, specs.MountNamespace} {
		if !ns[n] {
			t.Errorf("no new %s namespace", n)
		}
	}
	mounts := map[string]specs.Mount{}
	for _, m := range back.Mounts {
		mounts[m.Destination] = m
	}
	if m := mounts["/usr/bin/systemctl"]; m.Source != "/w/r1/cloonix/systemctl" {
		t.Errorf("shim mount %+v", m)
	}
	if m := mounts[cfgMount]; m.Source != "/w/r1/cloonix" || !strings.Contains(strings.Join(m.Options, ","), "ro") {
		t.Errorf("config mount %+v", m)
	}
	for _, p := range back.Linux.ReadonlyPaths {
		if p == "/proc/sys" || strings.HasPrefix(p, "/proc/sys/net") {
			t.Errorf("%s is read-only: routers could not set forwarding", p)
		}
	}
	if none := makeSpec(bundleSpec{Name: "x"}); none.Linux.Resources.Memory != nil || none.Linux.Resources.CPU != nil {
		t.Errorf("limits without --mem/--cpu: %+v", none.Linux.Resources)
	}
}

func TestCapsFor(t *testing.T) {
	all := capsFor(^uint64(0))
	if len(all) != len(nodeCaps) {
		t.Fatalf("%v", all)
	}
	some := capsFor(^uint64(0) &^ (1 << 24))
	for _, c := range some {
		if c == "CAP_SYS_RESOURCE" {
			t.Fatal("a capability the host lacks was asked for")
		}
	}
	if strings.Contains(strings.Join(all, ","), "SYS_MODULE") {
		t.Fatal("nodes get CAP_SYS_MODULE")
	}
}

// mkTree makes files (content "" for a directory, "->T" for a symlink).
func mkTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		var err error
		switch {
		case c == "":
			err = os.MkdirAll(full, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], full)
		default:
			err = os.WriteFile(full, []byte(c), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestResolveInAndShell(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{
		"usr/bin/dash": "x", "usr/bin/sh": "->dash", "bin": "->usr/bin", "abs/sh": "->/bin/busybox", "bin2/busybox": "x",
		"loop/a": "->b", "loop/b": "->a", "up/sh": "->../../../../usr/bin/dash", "etc/": "",
	})
	for in, want := range map[string]string{
		"bin/sh": "usr/bin/dash", "up/sh": "usr/bin/dash", "usr/../bin/sh": "usr/bin/dash",
	} {
		got, err := resolveIn(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("%s: %s %v, want %s", in, got, err, want)
		}
	}
	if _, err := resolveIn(root, "loop/a"); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("loop: %v", err)
	}
	if _, err := resolveIn(root, "abs/sh"); err == nil {
		t.Errorf("abs/sh resolved to the host's /bin/busybox")
	}
	if err := checkShell(root); err != nil {
		t.Error(err)
	}
	empty := t.TempDir()
	if err := checkShell(empty); err == nil || !strings.Contains(err.Error(), "/bin/sh") {
		t.Errorf("no shell: %v", err)
	}
}

func TestShimPaths(t *testing.T) {
	deb, bb, none := t.TempDir(), t.TempDir(), t.TempDir()
	mkTree(t, deb, map[string]string{"usr/bin/systemctl": "x", "bin": "->usr/bin"})
	mkTree(t, bb, map[string]string{"usr/bin/": "", "bin/sh": "x"})
	for tree, want := range map[string]string{deb: "/usr/bin/systemctl", bb: "/usr/bin/systemctl", none: ""} {
		if got := strings.Join(shimPaths(tree), ","); got != want {
			t.Errorf("%s: %q, want %q", tree, got, want)
		}
	}
}

// tarOf builds a tar from entries in order.
func tarOf(t testing.TB, hs ...tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hs {
		h.Size = int64(len(h.Linkname))
		body := ""
		if h.Typeflag == tar.TypeReg {
			body, h.Linkname = h.Linkname, ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

func TestUntar(t *testing.T) {
	outside := t.TempDir()
	dir := t.TempDir()
	data := tarOf(t,
		tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o4755, Linkname: "shell"},
		tar.Header{Name: "bin/ash", Typeflag: tar.TypeLink, Linkname: "bin/sh"},
		tar.Header{Name: "../../escape", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "esc"},
		tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside},
		tar.Header{Name: "out/pwned", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"},
		tar.Header{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: "../../.."},
		tar.Header{Name: "rel/pwned", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"},
		tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666},
		tar.Header{Name: "etc/x", Typeflag: tar.TypeReg, Mode: 0o600, Linkname: "one"},
		tar.Header{Name: "etc/x", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "two"},
	)
	if err := untar(bytes.NewReader(data), dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/ash")); string(b) != "shell" {
		t.Errorf("hard link: %q", b)
	}
	if st, _ := os.Stat(filepath.Join(dir, "bin/sh")); st == nil || st.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid lost: %v", st)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "escape")); string(b) != "esc" {
		t.Errorf("../../escape not kept inside: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/x")); string(b) != "two" {
		t.Errorf("later entry does not win: %q", b)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}
	if _, err := os.Lstat(filepath.Join(dir, "dev/null")); err == nil {
		t.Error("a device node was made")
	}
	if err := untar(bytes.NewReader(data[:700]), t.TempDir()); err == nil {
		t.Error("a truncated archive passed")
	}
}

func FuzzUntar(f *testing.F) {
	f.Add(tarOf(f, tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"}))
	f.Add(tarOf(f, tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}, tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Linkname: "x"}))
	f.Add(tarOf(f, tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "in")
		os.Mkdir(dir, 0o755)
		_ = untar(bytes.NewReader(data), dir)
		ents, _ := os.ReadDir(base)
		if len(ents) != 1 {
			t.Fatalf("written beside the tree: %v", ents)
		}
	})
}

// testImage builds an image of two layers from trees: the second
// replaces /etc/x and hides the first's /gone.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	layer := func(files map[string]string) v1.Layer {
		var hs []tar.Header
		for p, c := range files {
			if c == "" {
				hs = append(hs, tar.Header{Name: p, Typeflag: tar.TypeDir, Mode: 0o755})
			} else if strings.HasPrefix(c, "->") {
				hs = append(hs, tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: c[2:]})
			} else {
				hs = append(hs, tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o755, Linkname: c})
			}
		}
		data := tarOf(t, hs...)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	img, err := mutate.AppendLayers(empty.Image,
		layer(map[string]string{"bin/": "", "bin/sh": "#!shell", "etc/": "", "etc/x": "old", "gone": "g"}),
		layer(map[string]string{"etc/": "", "etc/x": "new", ".wh.gone": "w"}))
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/bin", "IMG=1"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestOCIArchiveAndLayout(t *testing.T) {
	img := testImage(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "img.tar")
	tag, _ := name.NewTag("cloonix/test:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	st := &Store{BulkDir: t.TempDir(), CacheDir: filepath.Join(dir, "cache")}
	var trees []string
	for _, ref := range []string{"docker-archive:" + archive, "oci:" + filepath.Join(dir, "layout")} {
		r, _ := ParseRef(ref)
		rf, err := st.Resolve(r)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if b, _ := os.ReadFile(filepath.Join(rf.Tree, "etc/x")); string(b) != "new" {
			t.Errorf("%s: etc/x %q", ref, b)
		}
		if _, err := os.Lstat(filepath.Join(rf.Tree, "gone")); err == nil {
			t.Errorf("%s: a whiteout file is there", ref)
		}
		if strings.Join(rf.Env, " ") != "PATH=/bin IMG=1" {
			t.Errorf("%s: env %v", ref, rf.Env)
		}
		trees = append(trees, rf.Tree)
	}
	if trees[0] != trees[1] {
		t.Errorf("one image cached twice: %v", trees)
	}
}

func TestBadImages(t *testing.T) {
	dir := t.TempDir()
	st := &Store{BulkDir: dir, CacheDir: filepath.Join(dir, "cache")}
	os.WriteFile(filepath.Join(dir, "corrupt.tar"), []byte("not a tar at all, really not"), 0o644)
	good := filepath.Join(dir, "good.tar")
	tag, _ := name.NewTag("cloonix/test:1")
	if err := tarball.WriteToFile(good, tag, testImage(t)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	os.WriteFile(filepath.Join(dir, "truncated.tar"), b[:len(b)/2], 0o644)
	noShell := t.TempDir()
	mkTree(t, noShell, map[string]string{"etc/passwd": "root"})
	for ref, want := range map[string]string{
		"docker-archive:" + filepath.Join(dir, "corrupt.tar"):   "docker save archive",
		"docker-archive:" + filepath.Join(dir, "truncated.tar"): "",
		"docker-archive:" + filepath.Join(dir, "missing.tar"):   "no such file",
		"oci:" + dir:       "OCI layout",
		"nosuchimage":      "cloonix bulk build nosuchimage",
		noShell:            "no /bin/sh",
		"/does/not/exist":  "no such file",
		"docker:frr:8.4.0": "",
	} {
		r, err := ParseRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Resolve(r)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ref, err, want)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, "cache", "*"))
	for _, l := range left {
		if !strings.Contains(filepath.Base(l), "sum-") {
			t.Errorf("left in the cache: %s", l)
		}
	}
}

func TestWriteTrees(t *testing.T) {
	all, one := t.TempDir(), t.TempDir()
	mkTree(t, all, map[string]string{"etc/motd": "all", "etc/rc.d/S1": "x"})
	mkTree(t, one, map[string]string{"etc/motd": "one", "etc/l": "->/etc/motd"})
	var b bytes.Buffer
	if err := writeTrees(&b, []string{all, one}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&b)
	var got []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d", h.Name, h.Uid)
		}
		got = append(got, h.Name)
	}
	if strings.Join(got, " ") != "etc etc/motd etc/rc.d etc/rc.d/S1 etc etc/l etc/motd" {
		t.Errorf("entries %v", got)
	}
	bad := t.TempDir()
	mkTree(t, bad, map[string]string{"l": "->../../x"})
	if err := writeTrees(&b, []string{bad}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("a link out of the tree: %v", err)
	}
}

func TestSpecCheck(t *testing.T) {
	ok := Spec{Name: "n1", Dir: "/w/n1", Rootfs: &Rootfs{Tree: "/t"}, Runtime: Runtime{Path: "/usr/sbin/runc", Root: "/w/runc"}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for want, mod := range map[string]func(*Spec){
		"node name":    func(s *Spec) { s.Name = "../x" },
		"at most":      func(s *Spec) { s.MACs = make([]net.HardwareAddr, MaxEths+1) },
		"at least":     func(s *Spec) { s.Mem = 2 },
		"negative":     func(s *Spec) { s.CPU = -1 },
		"one line":     func(s *Spec) { s.SSHKey = "a\nb" },
		"no rootfs":    func(s *Spec) { s.Rootfs = nil },
		"unicast":      func(s *Spec) { s.MACs = []net.HardwareAddr{{1, 2, 3, 4, 5, 6}} },
		"not absolute": func(s *Spec) { s.Dir = "rel" },
	} {
		s := ok
		mod(&s)
		if err := s.Check(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
}

func TestFindRuntime(t *testing.T) {
	if _, err := FindRuntime("cloonix-no-such-runtime"); err == nil || !strings.Contains(err.Error(), "apt-get install cloonix-no-such-runtime") {
		t.Fatalf("%v", err)
	}
}
