package tux

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

// TestMain lets this test binary be its own tux helper: Helper runs
// os.Executable() tux-helper KIND ..., as the switch runs cloonix.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "tux-helper" {
		if err := RunHelper(os.Args[2], os.Args[3:]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type event struct {
	typ string
	kv  []string
}

func testSpec(t *testing.T, kind string, o map[string]string) (Spec, chan fabric.Conn) {
	conns := make(chan fabric.Conn, 4)
	return Spec{Name: "t" + kind, Kind: kind, Options: o, Dir: t.TempDir(), MACs: &wire.MACSet{},
		Plug: func(c fabric.Conn) { conns <- c }}, conns
}

// waitHelperEvent waits for an event of type typ (the failure deadline is
// generous: nothing here measures time).
func waitHelperEvent(t *testing.T, evs chan event, typ string) event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-evs:
			if e.typ == typ {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event", typ)
		}
	}
}

// TestHelperRelaunch: a slirp helper killed with SIGKILL comes back on a
// fresh socket with its forward, and Stop ends it for good.
func TestHelperRelaunch(t *testing.T) {
	spec, conns := testSpec(t, "slirp", map[string]string{})
	evs := make(chan event, 64)
	h, err := Start(spec, func(typ string, kv ...string) { evs <- event{typ, kv} })
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	first := <-conns
	defer first.Close()
	waitHelperEvent(t, evs, "tux_started")
	if s, err := h.Stats(5 * time.Second); err != nil || s == nil {
		t.Fatalf("stats: %v %v", s, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostAddr := l.Addr().String()
	l.Close()
	fw := Forward{Proto: "tcp", Host: hostAddr, Guest: "10.0.2.15:22"}
	if err := h.AddForward(fw); err != nil {
		t.Fatal(err)
	}
	if err := h.AddForward(fw); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second forward: %v", err)
	}
	pid := h.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitHelperEvent(t, evs, "tux_died")
	waitHelperEvent(t, evs, "tux_relaunched")
	second := <-conns
	defer second.Close()
	st := h.Status()
	if st.Pid == pid || st.Pid == 0 || st.Restarts != 1 || st.State != "running" || len(st.Forwards) != 1 {
		t.Fatalf("after relaunch: %+v (old pid %d)", st, pid)
	}
	// The forward was re-sent: the new helper holds the host port.
	if c, err := net.Listen("tcp", hostAddr); err == nil {
		c.Close()
		t.Fatalf("forward %s not re-sent to the relaunched helper", hostAddr)
	}
	if err := h.DelForward("tcp", hostAddr); err != nil {
		t.Fatal(err)
	}
	newPid := st.Pid
	h.Stop()
	if err := syscall.Kill(newPid, 0); err != syscall.ESRCH {
		t.Fatalf("helper %d still there after Stop: %v", newPid, err)
	}
	if _, err := os.Stat(filepath.Join(spec.Dir, spec.Name+".leases")); !os.IsNotExist(err) {
		t.Fatalf("leases left after Stop: %v", err)
	}
	if _, err := h.Call(Request{Op: "stats"}); err == nil {
		t.Fatal("a stopped helper answered")
	}
}

// TestHelperStartFails: a helper that cannot set itself up (its UDP port
// is taken) makes Start fail with the helper's sentence, and nothing
// runs.
func TestHelperStartFails(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	spec, conns := testSpec(t, "vxlan", map[string]string{"remote": "127.0.0.2", "vni": "5", "port": strconv.Itoa(port), "local": "127.0.0.1"})
	h, err := Start(spec, nil)
	if err == nil {
		h.Stop()
		t.Fatal("vxlan started on a taken port")
	}
	if len(conns) != 0 {
		t.Fatal("a failed start plugged a conn")
	}
	t.Log(err)
}
