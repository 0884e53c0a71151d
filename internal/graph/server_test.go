package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"cloonix/internal/proto"
)

// fakeSwitch stands in for a switch connection.
type fakeSwitch struct {
	mu     sync.Mutex
	calls  []string
	lans   []string
	events chan proto.Event
	done   chan struct{}
	once   sync.Once
	fail   error // returned by Call when set
}

func newFake() *fakeSwitch {
	return &fakeSwitch{events: make(chan proto.Event, 16), done: make(chan struct{})}
}

func (f *fakeSwitch) Do(r proto.Request, _ any) error {
	args, _, err := proto.EncodeRequest(r)
	if err != nil {
		return err
	}
	_, err = f.Call(r.Verb(), args)
	return err
}

func (f *fakeSwitch) Call(verb string, args map[string]string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.calls = append(f.calls, verb+" "+args["name"])
	if verb == "add_lan" {
		f.lans = append(f.lans, args["name"])
	}
	return nil, nil
}

func (f *fakeSwitch) List() (*proto.Lab, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lab := &proto.Lab{Network: "fake"}
	for _, l := range f.lans {
		lab.Lans = append(lab.Lans, proto.Lan{Name: l})
	}
	lab.Normalize()
	return lab, nil
}

func (f *fakeSwitch) Subscribe() (<-chan proto.Event, error) { return f.events, nil }
func (f *fakeSwitch) Done() <-chan struct{}                  { return f.done }
func (f *fakeSwitch) Close() error {
	f.once.Do(func() {
		close(f.done)
		close(f.events)
	})
	return nil
}

func (f *fakeSwitch) addLan(name string) {
	f.mu.Lock()
	f.lans = append(f.lans, name)
	f.mu.Unlock()
	f.events <- proto.Event{Type: "lan_added", Attrs: map[string]string{"name": name}}
}

// rig is a server on a real loopback listener with a fake switch.
type rig struct {
	t    *testing.T
	srv  *Server
	ts   *httptest.Server
	mu   sync.Mutex
	sw   *fakeSwitch
	down bool         // dialing fails while set
	c    *http.Client // has the session cookie unless a password is set
}

func newRig(t *testing.T, opt Options) *rig {
	r := &rig{t: t, sw: newFake()}
	opt.Dial = func() (Switch, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down {
			return nil, errors.New("switch down for the test")
		}
		return r.sw, nil
	}
	opt.Logf = t.Logf
	r.srv = New(opt)
	stop := make(chan struct{})
	go r.srv.Run(stop)
	r.ts = httptest.NewServer(r.srv)
	t.Cleanup(func() {
		close(stop)
		r.ts.Close()
	})
	jar, _ := cookiejar.New(nil)
	r.c = &http.Client{Jar: jar}
	if opt.Password == "" {
		// As the user does: open the one-time URL `cloonix graph` printed.
		resp, err := r.c.Get(r.url(r.srv.LoginPath()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("one-time URL: %s", resp.Status)
		}
	}
	return r
}

func (r *rig) url(p string) string { return r.ts.URL + p }

func (r *rig) post(client *http.Client, body string, hdr map[string]string) (int, callReply) {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.url("/api/call"), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = r.c
	}
	resp, err := client.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep callReply
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	return resp.StatusCode, rep
}

func TestLoopback(t *testing.T) {
	for _, c := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:8080", true}, {"localhost:8080", true}, {"[::1]:80", true}, {"127.3.4.5:1", true},
		{"0.0.0.0:8080", false}, {":8080", false}, {"192.168.1.2:8080", false}, {"example.com:80", false}, {"nonsense", false},
	} {
		if got := IsLoopback(c.listen); got != c.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", c.listen, got, c.want)
		}
	}
	for _, c := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8080", true}, {"localhost:8080", true}, {"LOCALHOST", true}, {"[::1]:8080", true},
		{"evil.example:8080", false}, {"127.0.0.1.evil.example", false}, {"10.0.0.1:8080", false}, {"", false},
	} {
		if got := loopbackHost(c.host); got != c.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

func TestPageAndHost(t *testing.T) {
	r := newRig(t, Options{Loopback: true})
	resp, err := r.c.Get(r.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(r.srv.Token())) {
		t.Fatalf("page: %d, token in page: %v", resp.StatusCode, bytes.Contains(body, []byte(r.srv.Token())))
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("page may be framed: %v", resp.Header)
	}
	for _, p := range []string{"/dist/app.js", "/dist/app.css"} {
		resp, err := r.c.Get(r.url(p))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp.Status)
		}
		resp.Body.Close()
	}
	// DNS rebinding: a page of evil.example resolving to 127.0.0.1.
	req, _ := http.NewRequest("GET", r.url("/"), nil)
	req.Host = "evil.example:8080"
	resp, err = r.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || bytes.Contains(body, []byte(r.srv.Token())) {
		t.Fatalf("foreign Host got the page: %d", resp.StatusCode)
	}
	resp, _ = r.c.Get(r.url("/dist/../index.html"))
	if resp.StatusCode == 200 {
		t.Errorf("path escape served")
	}
	resp.Body.Close()
}

func TestCallChecks(t *testing.T) {
	r := newRig(t, Options{Loopback: true})
	origin := r.ts.URL
	tok := r.srv.Token()
	waitUp(t, r)
	for _, c := range []struct {
		name string
		body string
		hdr  map[string]string
		code int
	}{
		{"no origin", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"X-Cloonix-Token": tok}, 403},
		{"cross-site", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"X-Cloonix-Token": tok, "Origin": "http://evil.example"}, 403},
		{"same host other port", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"X-Cloonix-Token": tok, "Origin": "http://127.0.0.1:1"}, 403},
		{"no token", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": origin}, 403},
		{"wrong token", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok[:10]}, 403},
		{"token in query is not enough for POST without header", `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": origin}, 403},
		{"verb not allowed", `{"verb":"stop","args":{}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok}, 400},
		{"markup in arg name", `{"verb":"add_lan","args":{"name":"x","a=\"1\"/><stop id=\"9\"":"1"}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok}, 400},
		{"id arg", `{"verb":"add_lan","args":{"name":"x","id":"3"}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok}, 400},
		{"bad json", `{"verb":`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok}, 400},
		{"ok", `{"verb":"add_lan","args":{"name":"lan_ok"}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok}, 200},
	} {
		code, rep := r.post(nil, c.body, c.hdr)
		if code != c.code {
			t.Errorf("%s: status %d (%s), want %d", c.name, code, rep.Error, c.code)
		}
	}
	r.sw.mu.Lock()
	calls := strings.Join(r.sw.calls, ";")
	r.sw.mu.Unlock()
	if calls != "add_lan lan_ok" {
		t.Fatalf("switch saw %q, want only the allowed call", calls)
	}
	// A text/plain POST (what a cross-site form can send) is refused.
	req, _ := http.NewRequest("POST", r.url("/api/call"), strings.NewReader(`{"verb":"add_lan","args":{"name":"y"}}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Origin", origin)
	req.Header.Set("X-Cloonix-Token", tok)
	resp, err := r.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %d", resp.StatusCode)
	}
	// The switch's error reaches the page.
	r.sw.mu.Lock()
	r.sw.fail = errors.New(`lan "x" already exists`)
	r.sw.mu.Unlock()
	code, rep := r.post(nil, `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": origin, "X-Cloonix-Token": tok})
	if code != 200 || rep.OK || rep.Error != `lan "x" already exists` {
		t.Errorf("switch error: %d %+v", code, rep)
	}
}

func TestCheckCall(t *testing.T) {
	for _, c := range []struct {
		req callRequest
		ok  bool
	}{
		{callRequest{"attach", map[string]string{"port": "A:eth0", "lan": "l"}}, true},
		{callRequest{"set_pos", map[string]string{"kind": "vm", "name": "A", "x": "1", "y": "-2"}}, true},
		{callRequest{"list", nil}, false},
		{callRequest{"exec", nil}, false},
		{callRequest{"add_lan", map[string]string{"Name": "x"}}, false},
		{callRequest{"add_lan", map[string]string{"na me": "x"}}, false},
		{callRequest{"add_lan", map[string]string{"name": strings.Repeat("x", 5000)}}, false},
	} {
		if err := checkCall(c.req); (err == nil) != c.ok {
			t.Errorf("checkCall(%+v) = %v, want ok=%v", c.req, err, c.ok)
		}
	}
}

// FuzzCheckCall: whatever the page sends, an accepted request encodes to
// exactly one XML element with the same verb and attributes.
func FuzzCheckCall(f *testing.F) {
	f.Add("add_lan", "name", "x", "kind", "y")
	f.Add("attach", "port", "A:eth0", "lan", `"/><stop id="1"/>`)
	f.Add("set_pos", "x", "1", "a\"b", "1")
	f.Fuzz(func(t *testing.T, verb, k1, v1, k2, v2 string) {
		req := callRequest{Verb: verb, Args: map[string]string{k1: v1, k2: v2}}
		if checkCall(req) != nil {
			return
		}
		m := &proto.Msg{Name: verb, Attrs: map[string]string{"id": "1"}}
		for k, v := range req.Args {
			m.Attrs[k] = v
		}
		dec := proto.NewDecoder(bytes.NewReader(m.Bytes()))
		got, err := dec.Decode()
		if err != nil {
			if !strings.ContainsFunc(v1+v2, func(r rune) bool {
				return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF
			}) && strings.ToValidUTF8(v1+v2, "") == v1+v2 {
				t.Fatalf("accepted request does not decode: %v", err)
			}
			return
		}
		if got.Name != verb || len(got.Attrs) != len(m.Attrs) {
			t.Fatalf("request changed on the wire: %+v -> %+v", m, got)
		}
		if _, err := dec.Decode(); err != io.EOF {
			t.Fatalf("request smuggled a second message: %v", err)
		}
	})
}

func TestPassword(t *testing.T) {
	r := newRig(t, Options{Password: "s3cret"})
	jar, _ := cookiejar.New(nil)
	noFollow := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(r.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || bytes.Contains(body, []byte(r.srv.Token())) {
		t.Fatalf("page without password: %d", resp.StatusCode)
	}
	login := func(pw, origin string) *http.Response {
		req, _ := http.NewRequest("POST", r.url("/login"), strings.NewReader(url.Values{"password": {pw}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("s3cret", "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d", resp.StatusCode)
	}
	if resp := login("wrong", r.ts.URL); !strings.Contains(resp.Header.Get("Location"), "failed") {
		t.Errorf("wrong password: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The token alone is not enough without the login cookie.
	if code, _ := r.post(nil, `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": r.ts.URL, "X-Cloonix-Token": r.srv.Token()}); code != 403 {
		t.Errorf("call without login: %d", code)
	}
	if resp := login("s3cret", r.ts.URL); resp.Header.Get("Location") != "/" {
		t.Fatalf("good password: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = noFollow.Get(r.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(r.srv.Token())) {
		t.Fatalf("page after login: %d", resp.StatusCode)
	}
	waitUp(t, r)
	if code, rep := r.post(noFollow, `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": r.ts.URL, "X-Cloonix-Token": r.srv.Token()}); code != 200 || !rep.OK {
		t.Errorf("call after login: %d %+v", code, rep)
	}
	// Guessing is slowed down.
	var last *http.Response
	for i := 0; i < maxFailures+1; i++ {
		last = login("guess", r.ts.URL)
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d", maxFailures+1, last.StatusCode)
	}
}

func waitUp(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.srv.live.current(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("server never connected to the fake switch")
}

type liveMsg struct {
	Type  string      `json:"type"`
	Up    bool        `json:"up"`
	Error string      `json:"error"`
	Lab   *proto.Lab  `json:"lab"`
	Event proto.Event `json:"event"`
}

func dialLive(t *testing.T, r *rig, path, origin string) (*websocket.Conn, error) {
	u := "ws" + strings.TrimPrefix(r.ts.URL, "http") + path
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h, HTTPClient: r.c})
	return c, err
}

func readUntil(t *testing.T, c *websocket.Conn, d time.Duration, f func(liveMsg) bool) liveMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("live feed: %v", err)
		}
		var m liveMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if f(m) {
			return m
		}
	}
}

func TestLive(t *testing.T) {
	// No refresh by period during the test: a change shows only through
	// the switch's event.
	r := newRig(t, Options{Loopback: true, poll: time.Hour})
	tok := url.QueryEscape(r.srv.Token())
	if c, err := dialLive(t, r, "/api/live?token="+tok, "http://evil.example"); err == nil {
		c.CloseNow()
		t.Fatal("cross-site websocket accepted")
	}
	if c, err := dialLive(t, r, "/api/live?token=nope", r.ts.URL); err == nil {
		c.CloseNow()
		t.Fatal("websocket without token accepted")
	}
	c, err := dialLive(t, r, "/api/live?token="+tok, r.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	readUntil(t, c, 5*time.Second, func(m liveMsg) bool { return m.Type == "status" && m.Up })
	readUntil(t, c, 5*time.Second, func(m liveMsg) bool { return m.Type == "lab" })
	// A change made elsewhere is pushed, on the switch's event (the
	// period is an hour here); how soon is logged, not asserted.
	start := time.Now()
	r.sw.addLan("lan_new")
	readUntil(t, c, 5*time.Second, func(m liveMsg) bool {
		return m.Type == "lab" && len(m.Lab.Lans) == 1 && m.Lab.Lans[0].Name == "lan_new"
	})
	t.Logf("change shown after %v", time.Since(start))
	// Losing the switch shows, and the page recovers when it is back.
	r.mu.Lock()
	r.down = true
	old := r.sw
	r.sw = newFake()
	r.sw.lans = []string{"after"}
	r.mu.Unlock()
	old.Close()
	m := readUntil(t, c, 3*time.Second, func(m liveMsg) bool { return m.Type == "status" && !m.Up })
	if m.Error == "" {
		t.Error("lost switch without a reason")
	}
	if _, err := r.srv.live.list(); err == nil {
		t.Error("list works while the switch is down")
	}
	r.mu.Lock()
	r.down = false
	r.mu.Unlock()
	readUntil(t, c, 3*time.Second, func(m liveMsg) bool { return m.Type == "status" && m.Up })
	readUntil(t, c, 3*time.Second, func(m liveMsg) bool {
		return m.Type == "lab" && len(m.Lab.Lans) == 1 && m.Lab.Lans[0].Name == "after"
	})
}

// echo is a console that answers what it is sent, upper-cased.
type echo struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (e *echo) Read(p []byte) (int, error) { return e.r.Read(p) }
func (e *echo) Write(p []byte) (int, error) {
	go e.w.Write(bytes.ToUpper(p))
	return len(p), nil
}
func (e *echo) Close() error { return e.w.Close() }

func TestConsole(t *testing.T) {
	r := newRig(t, Options{Loopback: true, Console: func(vm string) (io.ReadWriteCloser, error) {
		if vm != "A" {
			return nil, errors.New("no such vm")
		}
		pr, pw := io.Pipe()
		return &echo{pr, pw}, nil
	}})
	tok := url.QueryEscape(r.srv.Token())
	if c, err := dialLive(t, r, "/api/console?vm=A&token="+tok, "http://evil.example"); err == nil {
		c.CloseNow()
		t.Fatal("cross-site console accepted")
	}
	if c, err := dialLive(t, r, "/api/console?vm=../x&token="+tok, r.ts.URL); err == nil {
		c.CloseNow()
		t.Fatal("bad vm name accepted")
	}
	wantClosed(t, r, "/api/console?vm=B&token="+tok, "no such vm")
	c, err := dialLive(t, r, "/api/console?vm=A&token="+tok, r.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte("hostname\r")); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(ctx)
	if err != nil || string(b) != "HOSTNAME\r" {
		t.Fatalf("console answer %q %v", b, err)
	}
}

func TestNoConsole(t *testing.T) {
	r := newRig(t, Options{Loopback: true})
	wantClosed(t, r, "/api/console?vm=A&token="+url.QueryEscape(r.srv.Token()), "offers no consoles")
}

// wantClosed dials a console websocket and expects it closed with reason.
func wantClosed(t *testing.T, r *rig, path, reason string) {
	t.Helper()
	c, err := dialLive(t, r, path, r.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusInternalError || !strings.Contains(err.Error(), reason) {
		t.Fatalf("console closed with %v, want %q", err, reason)
	}
}

// The server must not be reachable from other hosts by mistake: the
// command refuses a non-loopback address without a password; here we
// check the helper that decides it on the listener's real address.
func TestListenerAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !IsLoopback(l.Addr().String()) {
		t.Fatal("loopback listener not recognised")
	}
	if regexp.MustCompile(`^[0-9a-f]{64}$`).FindString(New(Options{Dial: func() (Switch, error) { return nil, errors.New("x") }}).Token()) == "" {
		t.Fatal("token is not 32 random bytes in hex")
	}
}
