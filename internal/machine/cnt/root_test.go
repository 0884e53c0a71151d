package cnt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needRoot skips tests that start real containers when they cannot run.
func needRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starting containers needs root (overlay mounts, taps, runc)")
	}
	p, err := FindRuntime("")
	if err != nil {
		t.Skipf("runc is not installed (apt-get install runc): %v", err)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("the test rootfs is made from /bin/busybox (apt-get install busybox-static)")
	}
	return p
}

// busyboxTree makes a small rootfs from the host's static busybox.
func busyboxTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/rc.d", "root", "proc", "sys", "dev", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range strings.Fields(string(out)) {
		if app == "bin/busybox" {
			continue
		}
		p := filepath.Join(dir, app)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink("/bin/busybox", p); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\n"), 0o644)
	return dir
}

// lab is a runtime root and node directories for one test.
type lab struct {
	t    *testing.T
	rt   Runtime
	base string
}

func newLab(t *testing.T) *lab {
	p := needRoot(t)
	base := t.TempDir()
	return &lab{t: t, rt: Runtime{Path: p, Root: filepath.Join(base, "runc")}, base: base}
}

// spec is a node spec on tree with n eths.
func (l *lab) spec(name, tree string, eths int) Spec {
	dir := filepath.Join(l.base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	var macs []net.HardwareAddr
	for i := 0; i < eths; i++ {
		macs = append(macs, net.HardwareAddr{0x02, 0xc1, 0xee, byte(len(name)), name[0], byte(i)})
	}
	return Spec{Name: name, Dir: dir, Rootfs: &Rootfs{Ref: Ref{Kind: RefDir, Arg: tree}, Tree: tree}, MACs: macs, Runtime: l.rt}
}

func (l *lab) start(s Spec) *Container {
	l.t.Helper()
	c, err := Start(context.Background(), s)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(c.Stop)
	select {
	case <-c.Ready():
	case <-c.Done():
		l.t.Fatalf("%s: %s", s.Name, c.Reason())
	}
	return c
}

// run execs a shell command in c and returns its output and exit code.
func run(t *testing.T, c *Container, cmd string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := c.Exec(context.Background(), []string{"/bin/sh", "-c", cmd}, nil, &out, &out)
	if err != nil {
		t.Fatalf("%s: %q: %v", c.Name, cmd, err)
	}
	return out.String(), code
}

// relay copies frames (virtio header included) between two taps, as a
// lan of two ports would.
func relay(t *testing.T, a, b *os.File) {
	cp := func(from, to *os.File) {
		buf := make([]byte, 70000)
		for {
			n, err := from.Read(buf)
			if err != nil {
				return
			}
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go cp(a, b)
	go cp(b, a)
}

func TestTwoNodesPing(t *testing.T) {
	l := newLab(t)
	tree := busyboxTree(t)
	a := l.start(l.spec("a1", tree, 1))
	b := l.start(l.spec("b1", tree, 1))
	relay(t, a.Taps()[0], b.Taps()[0])
	for c, ip := range map[*Container]string{a: "10.9.0.1/24", b: "10.9.0.2/24"} {
		if out, code := run(t, c, "ip addr add "+ip+" dev eth0"); code != 0 {
			t.Fatalf("%s: %s", c.Name, out)
		}
	}
	out, code := run(t, a, "ping -c 2 -W 5 10.9.0.2")
	if code != 0 {
		t.Fatalf("a1 -> b1: exit %d: %s", code, out)
	}
	out, _ = run(t, b, "cat /sys/class/net/eth0/address; ip -o link show lo")
	if !strings.Contains(out, "02:c1:ee:02:62:00") || !strings.Contains(out, "UP") {
		t.Fatalf("b1's eth0 MAC or lo state: %s", out)
	}
}

func TestExecHostnameStdin(t *testing.T) {
	l := newLab(t)
	c := l.start(l.spec("host-x", busyboxTree(t), 0))
	if out, _ := run(t, c, "hostname"); strings.TrimSpace(out) != "host-x" {
		t.Fatalf("hostname %q", out)
	}
	for cmd, want := range map[string]int{"true": 0, "exit 3": 3, "false": 1, "kill -9 $$": 137,
		"mount -o remount,rw /proc/sys/kernel": 1, "mount -t tmpfs x /mnt": 1, "echo 1 > /proc/sys/net/ipv4/ip_forward": 0,
		"echo x > /proc/sys/kernel/core_pattern": 1} {
		if _, code := run(t, c, cmd); code != want {
			t.Errorf("%q: exit %d, want %d", cmd, code, want)
		}
	}
	var out bytes.Buffer
	code, err := c.Exec(context.Background(), []string{"tr", "a-z", "A-Z"}, strings.NewReader("hello\n"), &out, &out)
	if err != nil || code != 0 || out.String() != "HELLO\n" {
		t.Fatalf("stdin: %q %d %v", out.String(), code, err)
	}
	if _, err := c.Exec(context.Background(), []string{"/no/such/program"}, nil, &out, &out); err == nil {
		t.Fatal("a missing program ran")
	}
}

func TestConsole(t *testing.T) {
	l := newLab(t)
	c := l.start(l.spec("con", busyboxTree(t), 0))
	k, err := c.Console(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Write([]byte("echo marker-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	k.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !bytes.Contains(got, []byte("marker-42")) {
		n, err := k.Read(buf)
		if err != nil {
			t.Fatalf("console: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
	pid := k.pid
	k.Close()
	if err := unix.Kill(pid, 0); err == nil {
		t.Fatalf("console shell %d still there after Close", pid)
	}
}

func TestDemoFilesRCAndKey(t *testing.T) {
	l := newLab(t)
	tree := busyboxTree(t)
	os.WriteFile(filepath.Join(tree, "etc/old"), []byte("x"), 0o644)
	all, one := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(all, "etc/rc.d"), 0o755)
	os.WriteFile(filepath.Join(all, "etc/rc.d/S10first"), []byte("#!/bin/sh\necho first >> /tmp/order\n"), 0o755)
	os.WriteFile(filepath.Join(all, "etc/rc.d/S20second"), []byte("echo second >> /tmp/order\n"), 0o644)
	os.WriteFile(filepath.Join(all, "etc/motd"), []byte("all\n"), 0o644)
	os.MkdirAll(filepath.Join(one, "etc"), 0o755)
	os.WriteFile(filepath.Join(one, "etc/motd"), []byte("mine\n"), 0o600)
	os.Symlink("/etc/motd", filepath.Join(one, "etc/motd.link"))
	s := l.spec("demo1", tree, 0)
	s.Trees = []string{all, one}
	s.DeleteCmds = "rm -f /etc/old\n"
	s.SSHKey = "ssh-ed25519 AAAAC3Nza test@host"
	c := l.start(s)
	out, _ := run(t, c, "cat /tmp/order /etc/motd.link; stat -c '%a %u' /etc/motd; test -e /etc/old && echo old-left; cat /root/.ssh/authorized_keys")
	want := "first\nsecond\nmine\n600 0\nssh-ed25519 AAAAC3Nza test@host\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if _, err := os.Stat(filepath.Join(tree, "etc/old")); err != nil {
		t.Fatal("the reference tree was written:", err)
	}
}

// leftovers lists what a node may leave on the host.
func leftovers(t *testing.T, c *Container) []string {
	var left []string
	if unix.Kill(c.Pid(), 0) == nil {
		left = append(left, fmt.Sprintf("process %d", c.Pid()))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), c.Dir) {
		left = append(left, "a mount under "+c.Dir)
	}
	for _, d := range []string{"upper", "work", "rootfs"} {
		if _, err := os.Stat(c.path(d)); err == nil {
			left = append(left, d)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Runtime.Root, c.Name)); err == nil {
		left = append(left, "runtime state")
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*" + c.cgroup())
	left = append(left, cg...)
	return left
}

func TestStopLeavesNothing(t *testing.T) {
	l := newLab(t)
	c := l.start(l.spec("gone", busyboxTree(t), 2))
	// The host's interfaces besides the node's taps come and go with
	// other users of the machine: only new ones count.
	names := func() map[string]bool {
		m := map[string]bool{}
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			m[i.Name] = true
		}
		return m
	}
	before := names()
	run(t, c, "sleep 1000 & sleep 1000 & echo started")
	c.Stop()
	if c.Reason() != "stopped" {
		t.Fatalf("reason %q", c.Reason())
	}
	if left := leftovers(t, c); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	for n := range names() {
		if !before[n] && strings.HasPrefix(n, "cnt") {
			t.Errorf("host interface %s appeared", n)
		}
	}
}

func TestCrashReported(t *testing.T) {
	l := newLab(t)
	c := l.start(l.spec("crash", busyboxTree(t), 1))
	if err := unix.Kill(c.Pid(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if r := c.Reason(); !strings.Contains(r, "crashed") || !strings.Contains(r, "SIGKILL") {
		t.Fatalf("reason %q", r)
	}
	if _, err := c.Exec(context.Background(), []string{"true"}, nil, nil, nil); err == nil {
		t.Fatal("exec in a crashed node worked")
	}
	c.Stop()
	if left := leftovers(t, c); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestLimits(t *testing.T) {
	l := newLab(t)
	s := l.spec("lim", busyboxTree(t), 0)
	s.Mem, s.CPU = 64, 1
	c := l.start(s)
	for file, want := range map[string]string{
		"/sys/fs/cgroup/memory" + c.cgroup() + "/memory.limit_in_bytes": "67108864",
		"/sys/fs/cgroup/cpu" + c.cgroup() + "/cpu.cfs_quota_us":         "100000",
		"/sys/fs/cgroup/pids" + c.cgroup() + "/pids.max":                "4096",
	} {
		b, err := os.ReadFile(file)
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %q %v, want %s", file, b, err, want)
		}
	}
}

func TestRuntimeFailing(t *testing.T) {
	l := newLab(t)
	bad := filepath.Join(t.TempDir(), "badruntime")
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'badruntime: no cgroups for you' >&2\nexit 1\n"), 0o755)
	l.rt.Path = bad
	s := l.spec("bad", busyboxTree(t), 1)
	c, err := Start(context.Background(), s)
	if err == nil {
		c.Stop()
		t.Fatal("started with a failing runtime")
	}
	if !strings.Contains(err.Error(), "badruntime create: badruntime: no cgroups for you") {
		t.Fatalf("error %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), s.Dir) {
		t.Fatal("a mount was left")
	}
	ents, _ := os.ReadDir(s.Dir)
	for _, e := range ents {
		if e.Name() != "console.log" && e.Name() != "runtime.log" {
			t.Errorf("left in the node's dir: %s", e.Name())
		}
	}
}

// bulkStore is the bulk_dir of the tests, its trees unpacked into a
// temporary cache.
func bulkStore(t *testing.T, image string) *Store {
	dir := os.Getenv("CLOONIX_BULK")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, "cloonix_labs", "bulk")
	}
	if _, err := os.Stat(filepath.Join(dir, image+".img")); err != nil {
		t.Skipf("no %s.img in %s (make images)", image, dir)
	}
	cache := os.Getenv("CLOONIX_CNT_CACHE") // to keep trees between runs
	if cache == "" {
		cache = t.TempDir()
	}
	return &Store{BulkDir: dir, CacheDir: cache}
}

func TestBulkBusybox(t *testing.T) {
	l := newLab(t)
	st := bulkStore(t, "busybox")
	rf, err := st.Resolve(Ref{Kind: RefBulk, Arg: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := st.Resolve(Ref{Kind: RefBulk, Arg: "busybox"})
	if err != nil || again.Tree != rf.Tree {
		t.Fatalf("second resolve: %v %v", again, err)
	}
	s := l.spec("bb1", rf.Tree, 1)
	s.Rootfs = rf
	c := l.start(s)
	if out, code := run(t, c, "cat /etc/cloonix-release; hostname; ip -o link show eth0 | grep -c UP"); code != 0 || out != "cloonix busybox image\nbb1\n1\n" {
		t.Fatalf("%q %d", out, code)
	}
}

func TestDebianFRR(t *testing.T) {
	l := newLab(t)
	st := bulkStore(t, "debian-frr")
	rf, err := st.Resolve(Ref{Kind: RefBulk, Arg: "debian-frr"})
	if err != nil {
		t.Fatal(err)
	}
	demo := t.TempDir()
	os.MkdirAll(filepath.Join(demo, "etc/rc.d"), 0o755)
	os.WriteFile(filepath.Join(demo, "etc/rc.d/S50frr"), []byte("#!/bin/sh\nsystemctl --no-block restart frr.service\n"), 0o755)
	s := l.spec("frr1", rf.Tree, 1)
	s.Rootfs, s.Trees = rf, []string{demo}
	c := l.start(s)
	if os.Getenv("CNT_DEBUG") != "" {
		o, _ := run(t, c, os.Getenv("CNT_DEBUG"))
		t.Log(o)
	}
	out, code := run(t, c, "pgrep -x zebra >/dev/null && pgrep -x watchfrr >/dev/null && vtysh -c 'show version' | head -1; cat /proc/sys/net/ipv4/ip_forward")
	if code != 0 || !strings.Contains(out, "FRRouting") || !strings.HasSuffix(out, "1\n") {
		t.Fatalf("FRR in the node: %q exit %d\nconsole: %s", out, code, consoleTail(c.ConsoleLog()))
	}
}
