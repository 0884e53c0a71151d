package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/guest"
)

// Real boots of the bulk images with the guest agent (internal/guest) (CLOONIX_E2E=1, images in CLOONIX_BULK,
// built by `cloonix bulk build`): the agent applies the CD, answers pings
// and runs commands. These also measure boot-to-agent-ready times
// (docs/images.md).

// agentBulk is the image directory (CLOONIX_BULK, set up by TestMain).
func agentBulk(t *testing.T) string { return bulkDir }

func agentNeed(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: build the images first (make images)", err)
	}
}

// agentLog is a console log written by the VM process.
type agentLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *agentLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *agentLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// demoTrees makes a small demo: a file for all, a per-VM file, an rc.d
// script through a symlink.
func agentDemo(t *testing.T, dir, vm string) []string {
	all := filepath.Join(dir, "files_to_add_in_all_targets")
	one := filepath.Join(dir, "files_to_add_in_"+vm)
	agentTree(t, all, map[string]string{
		"etc/init.d/hello":  "x:#!/bin/sh\necho \"rc $1\" > /tmp/rc-ran\n",
		"etc/rc.d/S50hello": "->../init.d/hello",
		"etc/motd":          "all",
	})
	agentTree(t, one, map[string]string{"etc/motd": "only " + vm})
	return []string{all, one}
}

type agentBoot struct {
	image   string
	vm      string
	cdDev   string
	eths    int
	command func(t *testing.T, dir, cd string, agentFd *os.File) *exec.Cmd
}

func TestAgentBusyboxUML(t *testing.T) {
	needE2E(t)
	agentUML(t, "busybox", "uml1")
}
func TestAgentBusyboxQEMU(t *testing.T) {
	needE2E(t)
	agentQEMU(t, "busybox", "qemu1")
}
func TestAgentDebianFRRUML(t *testing.T) {
	needE2E(t)
	agentUML(t, "debian-frr", "umlfrr")
}
func TestAgentDebianFRRQEMU(t *testing.T) {
	needE2E(t)
	agentQEMU(t, "debian-frr", "qemufrr")
}

func agentUML(t *testing.T, image, vm string) {
	bulk := agentBulk(t)
	img := filepath.Join(bulk, image+".img")
	agentNeed(t, img)
	dir := t.TempDir()
	// A SOCK_SEQPACKET listener stands for the switch's bess socket: the
	// guest's vec0 must come up as eth0 and connect to it.
	bess := filepath.Join(dir, "bess.sock")
	ln, err := net.Listen("unixpacket", bess)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	connected := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			connected <- struct{}{}
			defer c.Close()
			buf := make([]byte, 2048)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	agentCheck(t, agentBoot{image: image, vm: vm, cdDev: "/dev/ubdb", eths: 1, command: func(t *testing.T, dir, cd string, agentFd *os.File) *exec.Cmd {
		uml := filepath.Join(bulk, "linux.uml") // patched for this host when needed
		if _, err := os.Stat(uml); err != nil {
			uml = "/usr/bin/linux.uml"
		}
		cmd := exec.Command(uml,
			"mem=256M", "umid=cxtest-"+filepath.Base(dir), "uml_dir="+dir,
			"ubd0="+filepath.Join(dir, "root.cow")+","+img, "ubd1r="+cd, "root=/dev/ubda",
			"con=null", "ssl=null", "con0=fd:0,fd:1", "ssl1=fd:3",
			"vec0:transport=bess,dst="+bess,
			"cloonix.name="+vm, "cloonix.cd=/dev/ubdb", "cloonix.agent=/dev/ttyS1", "net.ifnames=0", "init=/sbin/init", "quiet", guest.NoAVXGodebug, guest.NoAVXGlibc)
		cmd.ExtraFiles = []*os.File{agentFd}
		return cmd
	}})
	select {
	case <-connected:
	default:
		t.Error("the guest's eth0 did not connect to the bess socket")
	}
}

func agentQEMU(t *testing.T, image, vm string) {
	bulk := agentBulk(t)
	img := filepath.Join(bulk, image+".img")
	for _, f := range []string{img, filepath.Join(bulk, "vmlinuz"), filepath.Join(bulk, "initrd.img")} {
		agentNeed(t, f)
	}
	agentCheck(t, agentBoot{image: image, vm: vm, cdDev: "/dev/vdb", eths: 2, command: func(t *testing.T, dir, cd string, agentFd *os.File) *exec.Cmd {
		overlay := filepath.Join(dir, "root.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", img, overlay).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1",
			"-nodefaults", "-display", "none", "-no-reboot",
			"-kernel", filepath.Join(bulk, "vmlinuz"), "-initrd", filepath.Join(bulk, "initrd.img"),
			"-append", "root=/dev/vda console=ttyS0 cloonix.name="+vm+" cloonix.cd=/dev/vdb cloonix.agent=/dev/ttyS1 net.ifnames=0 init=/sbin/init "+guest.QEMUFastBoot+os.Getenv("CLOONIX_TEST_APPEND"),
			"-drive", "file="+overlay+",if=virtio,format=qcow2,backing.file.locking=off",
			"-drive", "file="+cd+",if=virtio,format=raw,readonly=on",
			"-serial", "stdio",
			"-chardev", "pipe,id=agent,path=/dev/fd/3", // replaced below
			"-serial", "chardev:agent",
			"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01",
			"-netdev", "user,id=n1,restrict=on", "-device", "e1000,netdev=n1,mac=02:00:00:00:00:02",
		)
		// QEMU takes an inherited socket as a chardev through fd=.
		for i, a := range cmd.Args {
			if strings.HasPrefix(a, "pipe,id=agent") {
				cmd.Args[i] = "socket,id=agent,fd=3"
			}
		}
		cmd.ExtraFiles = []*os.File{agentFd}
		return cmd
	}})
}

func agentCheck(t *testing.T, bc agentBoot) {
	dir := t.TempDir()
	trees := agentDemo(t, dir, bc.vm)
	cd := filepath.Join(dir, "cd.iso")
	if err := guest.WriteCD(cd, guest.CDSpec{Name: bc.vm, SSHKey: "ssh-ed25519 AAAAtest test@cloonix", DeleteCmds: "rm -f /etc/cloonix-release\n", Trees: trees, Eths: bc.eths}); err != nil {
		t.Fatal(err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	guestEnd := os.NewFile(uintptr(fds[1]), "agent-guest")
	hostEnd := os.NewFile(uintptr(fds[0]), "agent-host")
	conn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := bc.command(t, dir, cd, guestEnd)
	var console agentLog
	stdin, _ := cmd.StdinPipe() // the console's input stays open
	cmd.Stdout, cmd.Stderr = &console, &console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guestEnd.Close()
	waited := false
	defer func() {
		stdin.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if !waited {
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("console of %s:\n%s", bc.vm, console.String())
		}
	}()
	c := guest.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("agent never ready: %v", err)
	}
	// CPU time says more than wall time on a loaded 2-core machine: the
	// guest is CPU-bound while it boots.
	t.Logf("%s: boot to agent ready in %.2f s (guest processes used %.2f s of CPU; load %s)", bc.vm, time.Since(start).Seconds(), agentCPU(cmd.Process.Pid), agentLoad())
	agentExecChecks(t, ctx, c, bc)
	// A root shell on the console.
	prompt := bc.vm + ":~# "
	if bc.image == "debian-frr" {
		prompt = "root@" + bc.vm
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(console.String(), prompt) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(console.String(), prompt) {
		t.Errorf("no root shell prompt %q on the console", prompt)
	}
	if bc.image == "busybox" {
		// poweroff ends the emulator (the switch then reports "stopped").
		c.Exec(ctx, []string{"poweroff"}, nil)
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
			waited = true
		case <-time.After(30 * time.Second):
			t.Error("poweroff did not end the emulator within 30 s")
		}
	}
}

// agentExecChecks runs commands through a booted guest's agent: the CD's
// name, files, rc.d and key, its eths, large and concurrent execs, the
// image's services and (busybox on QEMU) DHCP.
func agentExecChecks(t *testing.T, ctx context.Context, c *guest.Client, bc agentBoot) {
	run := func(want int, argv ...string) string {
		t.Helper()
		out, errb, code, err := c.Exec(ctx, argv, nil)
		if err != nil || code != want {
			t.Fatalf("exec %q: code %d err %v stdout %q stderr %q", argv, code, err, out, errb)
		}
		return string(out)
	}
	if h := strings.TrimSpace(run(0, "hostname")); h != bc.vm {
		t.Errorf("hostname %q, want %q", h, bc.vm)
	}
	run(1, "false")
	if out := run(0, "cat", "/etc/motd", "/tmp/rc-ran", "/root/.ssh/authorized_keys"); out != "only "+bc.vm+"rc start\nssh-ed25519 AAAAtest test@cloonix\n" {
		t.Errorf("demo files, rc.d or key: %q", out)
	}
	run(1, "test", "-e", "/etc/cloonix-release") // deleted by the delete commands
	if out := run(0, "ls", "-l", "/etc/rc.d/S50hello"); !strings.Contains(out, "-> ../init.d/hello") {
		t.Errorf("symlink not kept: %q", out)
	}
	if bc.cdDev == "/dev/vdb" {
		// QEMU NICs are named in the VM's order whatever their driver.
		if out := run(0, "cat", "/sys/class/net/eth0/address", "/sys/class/net/eth1/address"); out != "02:00:00:00:00:01\n02:00:00:00:00:02\n" {
			t.Errorf("eth order: %q", out)
		}
	}
	links := run(0, "sh", "-c", "cd /sys/class/net && echo *")
	for i := 0; i < bc.eths; i++ {
		if !strings.Contains(links, fmt.Sprintf("eth%d", i)) {
			t.Errorf("no eth%d in %q", i, links)
		}
	}
	// Outputs larger than a frame, stdin, and stderr.
	out, errb, code, err := c.Exec(ctx, []string{"sh", "-c", "cat; echo oops >&2; exit 3"}, bytes.Repeat([]byte("z"), 100000))
	if err != nil || code != 3 || len(out) != 100000 || string(errb) != "oops\n" {
		t.Errorf("stdin/stdout/stderr: code %d, %d bytes, %q, %v", code, len(out), errb, err)
	}
	// udhcpc's default script is where udhcpc looks for it.
	run(0, "test", "-x", "/etc/udhcpc/default.script")
	if bc.image == "debian-frr" {
		run(0, "systemctl", "is-active", "frr", "ssh")
		if out := run(0, "vtysh", "-c", "show version"); !strings.Contains(out, "FRRouting") {
			t.Errorf("vtysh: %q", out)
		}
	}
	// Concurrent execs.
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, _, code, err := c.Exec(ctx, []string{"sh", "-c", fmt.Sprintf("sleep 0.2; echo %d", i)}, nil)
			if err != nil || code != 0 || strings.TrimSpace(string(out)) != fmt.Sprint(i) {
				t.Errorf("concurrent exec %d: %q %d %v", i, out, code, err)
			}
		}(i)
	}
	wg.Wait()
	if bc.image == "busybox" && bc.cdDev == "/dev/vdb" {
		// QEMU's user network answers DHCP: udhcpc's default script sets
		// the address and the default route.
		run(0, "udhcpc", "-i", "eth0", "-n", "-q", "-t", "10")
		if out := run(0, "ip", "addr", "show", "eth0"); !strings.Contains(out, "10.0.2.15/24") {
			t.Errorf("udhcpc set no address: %q", out)
		}
		if out := run(0, "ip", "route"); !strings.Contains(out, "default via 10.0.2.2") {
			t.Errorf("udhcpc set no default route: %q", out)
		}
	}
}

// groupCPU sums user+system CPU seconds of the processes of group pgid.
func agentCPU(pgid int) float64 {
	var ticks int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// fields after the name: state ppid pgrp ... utime(12) stime(13)
		if len(f) < 13 || f[2] != fmt.Sprint(pgid) {
			continue
		}
		var u, st int64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &st)
		ticks += u + st
	}
	return float64(ticks) / 100
}

func agentLoad() string {
	data, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// agentTree makes files under root: "->T" is a symlink to T, "x:" an
// executable.
func agentTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasPrefix(content, "->"):
			err = os.Symlink(content[2:], p)
		case strings.HasPrefix(content, "x:"):
			err = os.WriteFile(p, []byte(content[2:]), 0o755)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestBulkBuildTwice runs `cloonix bulk build kernels busybox` into a
// fresh directory twice: the second run is quick and changes nothing;
// `bulk list` shows the files.
func TestBulkBuildTwice(t *testing.T) {
	needE2E(t)
	// The agent inside the images must be static, whatever CGO_ENABLED
	// this test runs with.
	// bulk build takes the agent (cmd/cloonix-agent) from beside cloonix.
	binDir := t.TempDir()
	static := filepath.Join(binDir, "cloonix")
	for _, pkg := range []string{"cloonix", "cloonix-agent"} {
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, pkg), "../cmd/"+pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	dir := t.TempDir()
	bulk := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(static, append([]string{"bulk"}, append(args, "--bulk-dir", dir)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bulk %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	bulk("build", "kernels", "busybox")
	files := []string{"vmlinuz", "initrd.img", "linux.uml", "busybox.img"}
	before := map[string]os.FileInfo{}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = st
	}
	start := time.Now()
	out := bulk("build", "kernels", "busybox")
	if d := time.Since(start); d > 10*time.Second || strings.Count(out, "up to date") != 2 {
		t.Errorf("second build took %v and said:\n%s", d, out)
	}
	for _, f := range files {
		st, _ := os.Stat(filepath.Join(dir, f))
		if !st.ModTime().Equal(before[f].ModTime()) || st.Size() != before[f].Size() {
			t.Errorf("%s changed on the second build", f)
		}
	}
	list := bulk("list")
	for _, want := range []string{"busybox.img", "rootfs", "vmlinuz", "kernel", "initrd.img", "linux.uml"} {
		if !strings.Contains(list, want) {
			t.Errorf("bulk list lacks %q:\n%s", want, list)
		}
	}
	// An unknown image is refused with the choices.
	cmd := exec.Command(static, "bulk", "build", "windows", "--bulk-dir", dir)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "debian-frr") {
		t.Errorf("unknown image: %v %s", err, out)
	}
}
