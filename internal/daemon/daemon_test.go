package daemon

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

// testSwitch is a daemon running in-process with a private work_dir,
// control socket and TCP port.
type testSwitch struct {
	t    *testing.T
	d    *Daemon
	cfg  *config.Config
	ran  chan error
	once sync.Once
}

func freeTCP(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startSwitch(t *testing.T) *testSwitch {
	t.Helper()
	return startSwitchWith(t, Features()...)
}

// startSwitchWith runs a switch built from the features given.
func startSwitchWith(t *testing.T, feats ...Feature) *testSwitch {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "clxd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg, err := config.Parse([]byte(fmt.Sprintf(`<cloonix_config>
  <network_name>unit</network_name><work_dir>%s</work_dir><server_name>%s/ctl</server_name>
  <server_port>%d</server_port><password>s3cret-unit</password><no_nat>true</no_nat><mgmt>off</mgmt>
</cloonix_config>`, dir, dir, freeTCP(t))), "test")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSwitch{t: t, d: NewWith(cfg, feats...), cfg: cfg, ran: make(chan error, 1)}
	go func() { s.ran <- s.d.Run() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := proto.Dial("unix:"+cfg.ServerName, "")
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-s.ran:
			t.Fatalf("switch did not start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("switch does not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *testSwitch) stop() {
	s.once.Do(func() {
		s.d.Stop()
		select {
		case <-s.ran:
		case <-time.After(30 * time.Second):
			s.t.Error("switch did not stop within 30 s")
		}
	})
}

func (s *testSwitch) client() *proto.Client {
	s.t.Helper()
	c, err := proto.Dial("unix:"+s.cfg.ServerName, "")
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *testSwitch) call(verb string, kv ...string) ([]byte, error) {
	s.t.Helper()
	c := s.client()
	defer c.Close()
	a := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return c.Call(verb, a)
}

func (s *testSwitch) must(verb string, kv ...string) []byte {
	s.t.Helper()
	out, err := s.call(verb, kv...)
	if err != nil {
		s.t.Fatalf("<%s %v>: %v", verb, kv, err)
	}
	return out
}

// shape is the lab without counters: what a bad request must not change.
func (s *testSwitch) shape() *proto.Lab {
	lab := s.d.Lab()
	for i := range lab.Ports {
		lab.Ports[i].Counters = proto.Counters{}
		lab.Ports[i].Connected = false
	}
	for i := range lab.Lans {
		lab.Lans[i].Counters = proto.Counters{}
	}
	return lab
}

// raw opens a control connection without the client library.
func (s *testSwitch) raw() (net.Conn, *proto.Decoder) {
	s.t.Helper()
	c, err := net.Dial("unix", s.cfg.ServerName)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c, proto.NewDecoder(bufio.NewReader(c))
}

func TestControlSocketMode(t *testing.T) {
	s := startSwitch(t)
	fi, err := os.Stat(s.cfg.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want socket 0600", fi.Mode())
	}
}

func TestStopRemovesSockets(t *testing.T) {
	s := startSwitch(t)
	out := s.must("add_port", "name", "p1", "kind", "stream")
	s.must("add_port", "name", "p2", "kind", "dgram")
	for _, k := range []string{"tap", "vtap"} { // guests' eths only
		if out, err := s.call("add_port", "name", "p3", "kind", k); err == nil || !strings.Contains(err.Error(), "made by add_vm") {
			t.Fatalf("add_port kind %s: %s %v, want a refusal", k, out, err)
		}
	}
	var p struct {
		Socket string `xml:"socket,attr"`
	}
	if err := xml.Unmarshal(out, &p); err != nil || p.Socket != filepath.Join(s.cfg.PortsDir(), "p1.sock") {
		t.Fatalf("add_port reply %s (%v)", out, err)
	}
	s.stop()
	for _, f := range []string{s.cfg.ServerName, s.cfg.PidFile(), p.Socket, s.cfg.PortsDir()} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s still exists after stop", f)
		}
	}
	if c, err := net.Dial("tcp", s.cfg.TCPAddr()); err == nil {
		c.Close()
		t.Error("TCP control still answers after stop")
	}
}

func TestTwoSwitches(t *testing.T) {
	a, b := startSwitch(t), startSwitch(t)
	a.must("add_lan", "name", "only_in_a")
	b.must("add_lan", "name", "only_in_b")
	a.must("add_port", "name", "same")
	b.must("add_port", "name", "same") // its own work_dir: no clash
	for _, c := range []struct {
		s    *testSwitch
		want string
	}{{a, "only_in_a"}, {b, "only_in_b"}} {
		lab := c.s.d.Lab()
		if len(lab.Lans) != 1 || lab.Lans[0].Name != c.want {
			t.Errorf("lans %+v, want only %s", lab.Lans, c.want)
		}
	}
	// A third one on a's control socket is refused and harms nothing.
	d := New(a.cfg)
	if err := d.Run(); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Errorf("second switch on one socket: %v", err)
	}
	a.must("ping")
}

func TestTCPAuth(t *testing.T) {
	s := startSwitch(t)
	srv := "tcp:" + s.cfg.TCPAddr()
	c, err := proto.Dial(srv, "s3cret-unit")
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	if _, err := c.Call("ping", nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := proto.Dial(srv, "wrong"); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v", err)
	}
	// By hand: the challenge, a wrong answer, one error reply, closed.
	for name, first := range map[string]string{
		"wrong hmac":    `<auth id="1" hmac="00"/>`,
		"verb not auth": `<add_lan id="1" name="sneaky"/>`,
		"garbage":       `<<<`,
	} {
		conn, err := net.Dial("tcp", s.cfg.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		dec := proto.NewDecoder(bufio.NewReader(conn))
		ch, err := dec.Decode()
		if err != nil || ch.Name != "challenge" || len(ch.Get("nonce")) != 64 {
			t.Fatalf("%s: challenge %+v %v", name, ch, err)
		}
		if strings.Contains(ch.Get("nonce"), "s3cret-unit") {
			t.Fatal("password in the challenge")
		}
		_, _ = conn.Write([]byte(first))
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		r, err := dec.Decode()
		if err != nil || proto.ReplyError(r) == nil || !strings.Contains(proto.ReplyError(r).Error(), "authentication failed") {
			t.Errorf("%s: reply %+v %v, want an authentication error", name, r, err)
		}
		r, err = dec.Decode()
		if err == nil {
			t.Errorf("%s: connection still open, got %+v", name, r)
		}
		conn.Close()
	}
	if s.d.Fab.HasLan("sneaky") {
		t.Error("an unauthenticated request was served")
	}
}

// TestBadRequests: each bad request gets one clear error and changes
// nothing; the connection stays usable unless the stream itself broke.
func TestBadRequests(t *testing.T) {
	s := startSwitch(t)
	s.must("add_lan", "name", "lan1")
	s.must("add_port", "name", "p1")
	s.must("attach", "port", "p1", "lan", "lan1")
	long := strings.Repeat("x", 65)
	cases := []struct {
		req, want string
		closes    bool
	}{
		{`<frobnicate id="1"/>`, "unknown request <frobnicate>", false},
		{`<add_lan id="1"/>`, "needs attribute name", false},
		{`<add_lan id="1" name=""/>`, "needs attribute name", false},
		{`<add_lan id="1" name="lan1"/>`, "already exists", false},
		{`<add_port id="1" name="p1"/>`, "already exists", false},
		{`<add_lan id="1" name="a/b"/>`, "'/'", false},
		{`<add_lan id="1" name=".."/>`, `".."`, false},
		{`<add_port id="1" name="../../etc/x"/>`, "", false},
		{`<add_lan id="1" name="a b"/>`, "' '", false},
		{`<add_lan id="1" name="a&#9;b"/>`, `'\t'`, false},
		{`<add_port id="1" name="` + long + `"/>`, "limit is 64", false},
		{`<add_port id="1" name="ok" kind="carrier-pigeon"/>`, "use stream or dgram", false},
		{`<del_lan id="1" name="nope"/>`, "no such lan", false},
		{`<del_port id="1" name="nope"/>`, "no such raw port", false},
		{`<attach id="1" port="nope" lan="lan1"/>`, "no such port", false},
		{`<attach id="1" port="p1" lan="lan1"/>`, "already on lan", false},
		{`<attach id="1" port="p1" lan="bad/lan"/>`, "'/'", false},
		{`<detach id="1" port="p1" lan="nope"/>`, "not found", false},
		{`<attach id="1" port="p1"/>`, "needs attribute lan", false},
		{`<add_lan id="1" name="x"></nope>`, "bad message", true},
		{`hello`, "outside an element", true},
		{`<!DOCTYPE x [<!ENTITY a "b">]>`, "directives", true},
		{`<add_lan id="1" name="&bogus;"/>`, "bad message", true},
		{"<add_lan id=\"1\" name=\"a\x01b\"/>", "bad message", true},
		{`<add_lan id="1" name="x" name="y"/>`, "attribute name twice", true},
	}
	before := s.shape()
	for _, c := range cases {
		conn, dec := s.raw()
		// The request and a ping behind it: the ping must be answered
		// after the error, or the connection closed.
		if _, err := conn.Write([]byte(c.req + "\n" + `<ping id="2"/>`)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		r, err := dec.Decode()
		if err != nil {
			t.Errorf("%s: no reply: %v", c.req, err)
			continue
		}
		rerr := proto.ReplyError(r)
		if rerr == nil || !strings.Contains(rerr.Error(), c.want) {
			t.Errorf("%s: reply %v, want an error with %q", c.req, rerr, c.want)
		}
		r, err = dec.Decode()
		if c.closes && err == nil {
			t.Errorf("%s: connection still served %+v after a broken stream", c.req, r)
		}
		if !c.closes && (err != nil || proto.ReplyError(r) != nil) {
			t.Errorf("%s: connection unusable after the error: %v", c.req, err)
		}
		conn.Close()
	}
	if after := s.shape(); !reflect.DeepEqual(before, after) {
		t.Errorf("bad requests changed the lab:\nbefore %+v\nafter  %+v", before, after)
	}
	if entries, _ := os.ReadDir(s.cfg.PortsDir()); len(entries) != 1 {
		t.Errorf("ports dir holds %d entries, want p1.sock only", len(entries))
	}
	s.must("ping")
}

// TestTruncatedAndVanishing: half messages, then the client goes away.
func TestTruncatedAndVanishing(t *testing.T) {
	s := startSwitch(t)
	before := s.shape()
	for _, half := range []string{`<add_lan id="1" name="ha`, `<add_lan id="1" name="half">`, `<`, `<add_port id="1" name="x" kind="stream"`} {
		for i := 0; i < 20; i++ {
			c, err := net.Dial("unix", s.cfg.ServerName)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte(half))
			c.Close()
		}
	}
	// One that stays silent mid-message does not hold anybody up.
	c, _ := net.Dial("unix", s.cfg.ServerName)
	defer c.Close()
	_, _ = c.Write([]byte(`<add_lan id="1" na`))
	s.must("add_lan", "name", "after")
	s.must("del_lan", "name", "after")
	if after := s.shape(); !reflect.DeepEqual(before, after) {
		t.Errorf("half messages changed the lab: %+v", after)
	}
}

// TestOversizeMessage: a message past MaxMessage is refused and closed.
func TestOversizeMessage(t *testing.T) {
	s := startSwitch(t)
	conn, dec := s.raw()
	go func() {
		_, _ = conn.Write([]byte(`<add_lan id="1" name="`))
		chunk := []byte(strings.Repeat("a", 64<<10))
		for i := 0; i < (proto.MaxMessage>>16)+4; i++ {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r, err := dec.Decode()
	if err != nil || proto.ReplyError(r) == nil || !strings.Contains(proto.ReplyError(r).Error(), "longer than") {
		t.Errorf("oversize: %+v %v", r, err)
	}
	s.must("ping")
}

// TestManyClients: 200 clients at once, each with its own lan.
func TestManyClients(t *testing.T) {
	s := startSwitch(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := proto.Dial("unix:"+s.cfg.ServerName, "")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := c.Call("add_lan", map[string]string{"name": fmt.Sprintf("lan%03d", i)}); err != nil {
				errs <- err
				return
			}
			if _, err := c.List(); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(s.d.Lab().Lans); got != n {
		t.Errorf("%d lans, want %d", got, n)
	}
}

// TestEvents: a subscriber sees every change, in order.
func TestEvents(t *testing.T) {
	s := startSwitch(t)
	c := s.client()
	ev, err := c.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	s.must("add_lan", "name", "l1")
	s.must("add_port", "name", "p1", "kind", "dgram")
	s.must("attach", "port", "p1", "lan", "l2")
	s.must("detach", "port", "p1", "lan", "l2")
	s.must("del_port", "name", "p1")
	s.must("del_lan", "name", "l1")
	want := []string{"lan_added name=l1", "port_added kind=dgram name=p1 socket=" + filepath.Join(s.cfg.PortsDir(), "p1.sock"),
		"lan_added name=l2", "attached lan=l2 port=p1", "detached lan=l2 port=p1", "lan_deleted name=l2",
		"port_deleted name=p1", "lan_deleted name=l1"}
	for i, w := range want {
		select {
		case e := <-ev:
			if e.String() != w {
				t.Fatalf("event %d: %q, want %q", i, e.String(), w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d (%s) never came", i, w)
		}
	}
}

// TestDeafSubscriber: a subscriber that never reads is dropped alone;
// the switch keeps answering and switching meanwhile.
func TestDeafSubscriber(t *testing.T) {
	s := startSwitch(t)
	deaf, _ := s.raw()
	if _, err := deaf.Write([]byte(`<subscribe id="1"/>`)); err != nil {
		t.Fatal(err)
	}
	// Traffic through two ports while events pile up.
	a, b := s.streamPeer("pa", "traffic"), s.streamPeer("pb", "traffic")
	b.send(t, bcastFrame(macB, 1)) // B's MAC is learnt
	c := s.client()
	start := time.Now()
	// 12000 events: more than the client queue (4096) and any socket
	// buffer can hold, so the deaf one must be dropped.
	for i := 0; i < 6000; i++ {
		name := fmt.Sprintf("churn%d", i%10)
		if _, err := c.Call("add_lan", map[string]string{"name": name}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call("del_lan", map[string]string{"name": name}); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			a.send(t, frameTo(macB, macA, uint32(i)))
			b.expect(t, uint32(i))
		}
	}
	t.Logf("12000 requests with a deaf subscriber in %v", time.Since(start))
	// The deaf one was dropped: what it can still read ends in EOF.
	_ = deaf.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.Copy(io.Discard, deaf); err != nil {
		t.Errorf("deaf subscriber not dropped: %v", err)
	}
	s.must("ping")
}
