package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/proto"
)

// Lab lifecycle (issue 16): stop/start, save, carrier, resume after a
// kill -9 of the switch, portable labs. QEMU guests are kept to two boots
// in all (TCG is slow here).

// ipUp gives vm's eth0 addr/24 and brings it up.
func (l *Lab) ipUp(vm, addr string) {
	l.t.Helper()
	l.mustExec(vm, "ip", "addr", "add", addr+"/24", "dev", "eth0")
	l.mustExec(vm, "ip", "link", "set", "eth0", "up")
}

// vmOf returns vm from list.
func (l *Lab) vmOf(name string) proto.VM {
	l.t.Helper()
	for _, v := range l.List().VMs {
		if v.Name == name {
			return v
		}
	}
	l.t.Fatalf("no vm %s in list", name)
	return proto.VM{}
}

// mustFail runs a command that must fail with a message holding want.
func (l *Lab) mustFail(want string, args ...string) {
	l.t.Helper()
	out, err := l.Run(args...)
	if err == nil {
		l.t.Fatalf("cloonix %s succeeded; want an error with %q\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(out, want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		l.t.Fatalf("cloonix %s: want one line with %q, got:\n%s", strings.Join(args, " "), want, out)
	}
}

// carrier waits until vm's eth0 carrier reads want: the guest's driver
// handles the NIC's link change interrupt after set_link returned.
func (l *Lab) carrier(vm, want string) {
	l.t.Helper()
	Eventually(l.t, 30*time.Second, vm+" eth0 carrier "+want, func() error {
		out, err := l.exec(vm, "cat", "/sys/class/net/eth0/carrier")
		if err != nil {
			return err
		}
		if c := strings.TrimSpace(out); c != want {
			return fmt.Errorf("carrier %q", c)
		}
		return nil
	})
}

// waitFor waits for an event of typ whose attribute k is v.
func waitFor(t *testing.T, ev <-chan proto.Event, typ, k, v string) proto.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-ev:
			if !ok {
				t.Fatalf("event stream ended before %s %s=%s", typ, k, v)
			}
			if e.Type == typ && e.Attrs[k] == v {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event with %s=%s", typ, k, v)
		}
	}
}

// TestLifecycleQEMU: a QEMU guest and a UML guest on one lan. Carrier
// down/up is seen inside the QEMU guest with pings failing then passing;
// stop/start keeps files, MACs and lans; save writes a standalone image;
// fconf save --with-disks is loaded by a second switch on another
// work_dir, whose guests boot from the saved disks.
func TestLifecycleQEMU(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	ref := filepath.Join(bulkDir, "busybox.img")
	sumBefore := sha256File(t, ref)
	l.MustRun("ctrl", "add", "vm", "q1", "--type", "kvm", "--wait")
	l.MustRun("ctrl", "add", "vm", "u1", "--type", "uml", "--wait")
	l.MustRun("ctrl", "attach", "q1:eth0", "lan")
	l.MustRun("ctrl", "attach", "u1:eth0", "lan")
	l.ipUp("q1", "10.7.0.1")
	l.ipUp("u1", "10.7.0.2")
	if !l.pings("q1", "10.7.0.2") {
		t.Fatal("q1 does not ping u1")
	}

	lifecycleCarrier(t, l)

	// Stop and start keep files, MACs and lans.
	macBefore := l.mustExec("q1", "cat", "/sys/class/net/eth0/address")
	l.mustExec("q1", "sh", "-c", "echo kept-q1 > /root/kept; sync")
	l.mustExec("u1", "sh", "-c", "echo kept-u1 > /root/kept; sync")
	l.mustFail("running already", "ctrl", "start", "vm", "q1")
	l.MustRun("ctrl", "stop", "vm", "q1")
	l.MustRun("ctrl", "stop", "vm", "u1")
	l.mustFail("already stopped", "ctrl", "stop", "vm", "q1")
	for _, n := range []string{"q1", "u1"} {
		v := l.vmOf(n)
		if v.State != "stopped" || len(v.Eths) != 1 || strings.Join(v.Eths[0].Lans, ",") != "lan" {
			t.Fatalf("after stop: %+v", v)
		}
	}
	saved := l.MustRun("fconf", "save", "-")
	if strings.Count(saved, "<state> stopped </state>") != 2 {
		t.Fatalf("fconf save does not record the stopped guests:\n%s", saved)
	}
	l.MustRun("ctrl", "start", "vm", "q1", "--wait")
	l.MustRun("ctrl", "start", "vm", "u1", "--wait")
	if got := l.mustExec("q1", "cat", "/root/kept"); got != "kept-q1\n" {
		t.Fatalf("q1 lost its file: %q", got)
	}
	if got := l.mustExec("u1", "cat", "/root/kept"); got != "kept-u1\n" {
		t.Fatalf("u1 lost its file: %q", got)
	}
	if mac := l.mustExec("q1", "cat", "/sys/class/net/eth0/address"); mac != macBefore {
		t.Fatalf("q1's MAC changed: %q -> %q", macBefore, mac)
	}
	l.ipUp("q1", "10.7.0.1")
	l.ipUp("u1", "10.7.0.2")
	if !l.pings("q1", "10.7.0.2") {
		t.Fatal("q1 does not ping u1 after stop/start")
	}

	// Portable lab: a second switch boots both from the saved disks.
	dir := filepath.Join(l.Dir, "portable")
	out := l.MustRun("fconf", "save", "--with-disks", dir)
	if !strings.Contains(out, "saved 2 VMs") {
		t.Fatalf("fconf save --with-disks:\n%s", out)
	}
	l2 := NewLab(t, "<no_nat>true</no_nat>")
	l2.load(dir)
	if got := l2.mustExec("q1", "cat", "/root/kept"); got != "kept-q1\n" {
		t.Fatalf("q1 on the second switch: %q", got)
	}
	if got := l2.mustExec("u1", "cat", "/root/kept"); got != "kept-u1\n" {
		t.Fatalf("u1 on the second switch: %q", got)
	}
	l2.ipUp("q1", "10.7.0.1")
	l2.ipUp("u1", "10.7.0.2")
	if !l2.pings("q1", "10.7.0.2") {
		t.Fatal("q1 does not ping u1 on the second switch")
	}
	if sha256File(t, ref) != sumBefore {
		t.Fatal("the reference image changed")
	}
}

// lifecycleCarrier takes q1:eth0's link down and up: the guest sees the
// carrier, pings stop and come back, events and list follow.
func lifecycleCarrier(t *testing.T, l *Lab) {
	ev, err := l.Client().Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	l.MustRun("ctrl", "link", "q1:eth0", "down")
	waitFor(t, ev, "link_down", "port", "q1:eth0")
	l.carrier("q1", "0")
	// The kernel clears IFF_RUNNING (what ip shows as NO-CARRIER) from its
	// linkwatch work, up to a second after the carrier bit: seen once
	// under load as "<BROADCAST,MULTICAST,UP>" right after carrier 0.
	Eventually(t, 10*time.Second, "NO-CARRIER in q1's ip link", func() error {
		if out := l.mustExec("q1", "ip", "link", "show", "eth0"); !strings.Contains(out, "NO-CARRIER") {
			return fmt.Errorf("ip link in q1 after link down:\n%s", out)
		}
		return nil
	})
	if _, err := l.exec("q1", "ping", "-c2", "-W1", "10.7.0.2"); err == nil {
		t.Fatal("q1 pings u1 while its link is down")
	}
	if _, err := l.exec("u1", "ping", "-c2", "-W1", "10.7.0.1"); err == nil {
		t.Fatal("u1 pings q1 while q1's link is down")
	}
	if e := l.vmOf("q1").Eths[0]; e.Link != "down" {
		t.Fatalf("list shows q1:eth0 link %q", e.Link)
	}
	l.MustRun("ctrl", "link", "q1:eth0", "up")
	waitFor(t, ev, "link_up", "port", "q1:eth0")
	l.carrier("q1", "1")
	// The ARP entry that failed while the link was down is retried on
	// the guest's own schedule: pings come back, within a bound.
	l.pingsEventually("q1", "10.7.0.2")
}

// TestLifecycleUML: save a running UML guest, boot a new guest from the
// image; bad input gets one clear error and changes nothing.
func TestLifecycleUML(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	ref := filepath.Join(bulkDir, "busybox.img")
	sumBefore := sha256File(t, ref)
	l.MustRun("ctrl", "add", "vm", "a", "--type", "uml", "--wait")
	l.mustExec("a", "sh", "-c", "echo snap > /root/snap; sync")
	img := filepath.Join(l.Dir, "a.img")
	l.MustRun("ctrl", "save", "vm", "a", img)
	l.mustFail("exists", "ctrl", "save", "vm", "a", img)
	l.mustFail("cannot write", "ctrl", "save", "vm", "a", "/proc/a.img")
	if _, err := os.Stat("/proc/a.img"); err == nil {
		t.Fatal("a failed save left a file")
	}
	l.MustRun("ctrl", "add", "vm", "b", "--type", "uml", "--rootfs", img, "--wait")
	if got := l.mustExec("b", "cat", "/root/snap"); got != "snap\n" {
		t.Fatalf("b booted from a's image lacks the file: %q", got)
	}
	// The guest saved from runs on.
	l.mustExec("a", "true")
	if sha256File(t, ref) != sumBefore {
		t.Fatal("the reference image changed")
	}
	// A guest stopped while it boots is stopped hard, and starts again.
	l.MustRun("ctrl", "add", "vm", "c", "--type", "uml")
	l.MustRun("ctrl", "stop", "vm", "c")
	if st := l.vmOf("c").State; st != "stopped" {
		t.Fatalf("c is %s after stop during boot", st)
	}
	l.MustRun("ctrl", "start", "vm", "c", "--wait")
	l.mustExec("c", "true")
	l.MustRun("ctrl", "stop", "vm", "a")
	img2 := filepath.Join(l.Dir, "a2.img")
	l.MustRun("ctrl", "save", "vm", "a", img2) // stopped: from its kept COW
	if l.vmOf("a").State != "stopped" {
		t.Fatal("save started the stopped guest")
	}
}

// groupAlive tells whether any process is in process group pg.
func groupAlive(pg int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid pgrp ...
		if len(f) > 2 && f[0] != "Z" {
			if g, _ := strconv.Atoi(f[2]); g == pg && pid > 0 {
				return true
			}
		}
	}
	return false
}

func (l *Lab) switchPid() int {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir, "switch.pid"))
	if err != nil {
		l.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		l.t.Fatal(err)
	}
	return pid
}

// TestLifecycleResume: kill -9 of the switch leaves no guest or helper
// process within 5 s; start refuses to overwrite the journal; start
// --resume brings back lans, tux, forwards, impairments, positions,
// stopped states and the guests from their kept disks.
func TestLifecycleResume(t *testing.T) {
	l := NewLab(t, "")
	for _, n := range []string{"r1", "r2", "r3"} {
		l.MustRun("ctrl", "add", "vm", n, "--type", "uml", "--wait")
		l.MustRun("ctrl", "attach", n+":eth0", "lan")
	}
	l.MustRun("ctrl", "add", "vm", "k", "--type", "cnt", "--wait")
	l.MustRun("ctrl", "attach", "k:eth0", "lan")
	l.mustExec("k", "sh", "-c", "echo node > /root/n")
	l.MustRun("ctrl", "attach", "nat", "lan")
	l.MustRun("ctrl", "impair", "r2:eth0", "delay=5ms")
	fport := freePort(t)
	l.MustRun("ctrl", "forward", "add", "nat", "tcp", "127.0.0.1:"+strconv.Itoa(fport), "10.0.2.15:22")
	l.MustRun("ctrl", "link", "r3:eth0", "down")
	l.MustRun("ctrl", "stop", "vm", "r3")
	if _, err := l.Client().Call("set_pos", map[string]string{"kind": "vm", "name": "r1", "x": "10", "y": "20"}); err != nil {
		t.Fatal(err)
	}
	l.mustExec("r1", "sh", "-c", "echo journal > /root/j; sync")
	before := l.MustRun("fconf", "save", "-")

	var groups []int
	for _, v := range l.List().VMs {
		if v.Pid > 0 {
			groups = append(groups, v.Pid)
		}
	}
	for _, x := range l.List().Tux {
		groups = append(groups, x.Pid)
	}
	if err := syscall.Kill(l.switchPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 5*time.Second, "no process of the lab left", func() error {
		for _, g := range groups {
			if groupAlive(g) || syscall.Kill(g, 0) == nil {
				return fmt.Errorf("process (group) %d still alive", g)
			}
		}
		return nil
	})

	l.mustFail("--resume", "start")
	out := l.MustRun("start", "--resume")
	if !strings.Contains(out, "lab resumed: 3 guests running") {
		t.Fatalf("start --resume:\n%s", out)
	}
	after := l.MustRun("fconf", "save", "-")
	if after != before {
		t.Fatalf("resumed lab differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := l.mustExec("r1", "cat", "/root/j"); got != "journal\n" {
		t.Fatalf("r1 lost its file: %q", got)
	}
	if got := l.mustExec("k", "cat", "/root/n"); got != "node\n" {
		t.Fatalf("k lost its file: %q", got)
	}
	l.ipUp("r1", "10.8.0.1")
	l.ipUp("r2", "10.8.0.2")
	l.ipUp("k", "10.8.0.4")
	if !l.pings("r1", "10.8.0.2") || !l.pings("k", "10.8.0.1") {
		t.Fatal("r1 does not ping r2, or k r1, after resume")
	}
	l.MustRun("ctrl", "start", "vm", "r3", "--wait")
	l.ipUp("r3", "10.8.0.3")
	if _, err := l.exec("r1", "ping", "-c2", "-W1", "10.8.0.3"); err == nil {
		t.Fatal("r1 pings r3 whose link is down")
	}
}

// TestLifecycleCorruptJournal: a journal that cannot be read is refused
// with one clear error and left as it is.
func TestLifecycleCorruptJournal(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.MustRun("ctrl", "add", "lan", "keep")
	Eventually(t, 5*time.Second, "journal written", func() error {
		_, err := os.Stat(filepath.Join(l.Dir, "lab.journal"))
		return err
	})
	if err := syscall.Kill(l.switchPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	j := filepath.Join(l.Dir, "lab.journal")
	bad := []byte("<TOPOLOGY><VM><name>x</name>")
	if err := os.WriteFile(j, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 5*time.Second, "old switch gone", func() error {
		if _, err := os.Stat(l.Sock); err == nil {
			if _, err := l.Run("ctrl", "list"); err == nil {
				return fmt.Errorf("still answers")
			}
		}
		return nil
	})
	l.mustFail("cannot be resumed", "start", "--resume")
	if b, _ := os.ReadFile(j); string(b) != string(bad) {
		t.Fatal("the corrupt journal was changed")
	}
	l.MustRun("start", "--discard")
	if _, err := os.Stat(j); err == nil {
		t.Fatal("--discard kept the journal")
	}
}

// TestLifecycleDiscardCnt: start --discard after a switch died with a
// container node running leaves nothing of it: no runtime record, no
// mount, no directory; the name can be used again.
func TestLifecycleDiscardCnt(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	l.MustRun("ctrl", "add", "vm", "k", "--type", "cnt", "--wait")
	Eventually(t, 5*time.Second, "journal written", func() error {
		_, err := os.Stat(filepath.Join(l.Dir, "lab.journal"))
		return err
	})
	if len(mountsBelow(t, l.Dir)) == 0 {
		t.Fatal("a running cnt node has no mount in work_dir")
	}
	l.crashSwitch()
	l.MustRun("start", "--discard")
	if m := mountsBelow(t, l.Dir); len(m) != 0 {
		t.Fatalf("mounts left after --discard: %v", m)
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "k")); err == nil {
		t.Fatal("--discard left the node's directory")
	}
	if ents, _ := os.ReadDir(filepath.Join(l.Dir, ".runc")); len(ents) != 0 {
		t.Fatalf("--discard left runtime records: %v", ents)
	}
	l.MustRun("ctrl", "add", "vm", "k", "--type", "cnt", "--wait")
}

// crashSwitch kills the switch as a crash would (SIGKILL: no stop, the
// journal stays) and waits until it no longer answers.
func (l *Lab) crashSwitch() {
	t := l.t
	t.Helper()
	if err := syscall.Kill(l.switchPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "the switch gone", func() error {
		if _, err := l.Run("ctrl", "list"); err == nil {
			return fmt.Errorf("it still answers")
		}
		return nil
	})
}

// mountsBelow lists the mount points under dir.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append(ms, f[4])
		}
	}
	return ms
}

// TestLifecycleCnt: container nodes see their carrier drop and come back
// (the tap's), and a stop/start keeps their files and lans.
func TestLifecycleCnt(t *testing.T) {
	l := NewLab(t, "<no_nat>true</no_nat>")
	for _, n := range []string{"k1", "k2"} {
		l.MustRun("ctrl", "add", "vm", n, "--type", "cnt", "--wait")
		l.MustRun("ctrl", "attach", n+":eth0", "lan")
	}
	l.ipUp("k1", "10.5.0.1")
	l.ipUp("k2", "10.5.0.2")
	if !l.pings("k1", "10.5.0.2") {
		t.Fatal("k1 does not ping k2")
	}
	l.MustRun("ctrl", "link", "k1:eth0", "down")
	l.carrier("k1", "0")
	if _, err := l.exec("k1", "ping", "-c2", "-W1", "10.5.0.2"); err == nil {
		t.Fatal("k1 pings k2 while its link is down")
	}
	l.MustRun("ctrl", "link", "k1:eth0", "up")
	l.pingsEventually("k1", "10.5.0.2")
	l.mustExec("k1", "sh", "-c", "echo kept > /root/kept")
	l.MustRun("ctrl", "stop", "vm", "k1")
	l.MustRun("ctrl", "start", "vm", "k1", "--wait")
	if got := l.mustExec("k1", "cat", "/root/kept"); got != "kept\n" {
		t.Fatalf("k1 lost its file: %q", got)
	}
	l.ipUp("k1", "10.5.0.1")
	if !l.pings("k1", "10.5.0.2") {
		t.Fatal("k1 does not ping k2 after stop/start")
	}
}
