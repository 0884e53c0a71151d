// Package graph serves the live topology page: the embedded web assets,
// and HTTP and websocket endpoints that bridge the browser to the switch's
// XML control protocol (live lab and events, edits, consoles).
//
// Security (docs/security.md): the page and every /api/ request need the
// session cookie (HttpOnly, SameSite=Strict), which a browser gets only by
// proving it is the user: opening the one-time URL `cloonix graph` printed
// (LoginPath), or giving the password when one is set. The page carries a
// session token that every /api/ request repeats; state-changing requests
// and websockets need an Origin equal to the page's own, and on loopback
// the Host header must be a loopback name (DNS rebinding). Anyone else who
// reaches the port (another local user, a guest through a slirp gateway)
// gets neither the page nor the token.
package graph

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"cloonix/internal/proto"
	"cloonix/web"
)

// Switch is what the server needs from a switch connection; *proto.Client
// has it.
type Switch interface {
	Do(req proto.Request, reply any) error
	List() (*proto.Lab, error)
	Subscribe() (<-chan proto.Event, error)
	Done() <-chan struct{}
	Close() error
}

// Options configure a Server.
type Options struct {
	// Dial opens a new connection to the switch (called again after a loss).
	Dial func() (Switch, error)
	// Password, when set, must be given once per browser before the page
	// is shown. Required when Listen is not a loopback address.
	Password string
	// Loopback restricts Host headers to loopback names (DNS rebinding).
	Loopback bool
	// Console opens a VM's serial console; nil when the switch has none.
	Console func(vm string) (io.ReadWriteCloser, error)
	// Logf logs (default log.Printf).
	Logf func(format string, args ...any)

	// poll replaces the counters' refresh period (tests set it long, so
	// a change that shows at all came through the switch's event).
	poll time.Duration
}

// Server is the graph page's HTTP handler.
type Server struct {
	opt        Options
	token      string // session token put into the page
	cookie     string // value of the session cookie
	cookieName string // per server: browsers share cookies across ports
	assets     fs.FS
	mux        *http.ServeMux
	live       *live

	failMu   sync.Mutex
	failures map[string][]time.Time // login attempts (then failures) per remote host
	keys     map[string]bool        // one-time login keys not used yet
}

// New builds a Server; Start (or ServeHTTP after Run) serves it.
func New(opt Options) *Server {
	if opt.Logf == nil {
		opt.Logf = log.Printf
	}
	s := &Server{opt: opt, token: randomHex(32), cookie: randomHex(32), cookieName: "cloonix_graph_" + randomHex(4),
		assets: web.Assets, failures: map[string][]time.Time{}, keys: map[string]bool{}}
	s.live = newLive(opt.Dial, opt.Logf, cmp.Or(opt.poll, poll))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /dist/{file}", s.asset)
	mux.HandleFunc("GET /api/lab", s.apiLab)
	mux.HandleFunc("POST /api/call", s.apiCall)
	mux.HandleFunc("GET /api/live", s.apiLive)
	mux.HandleFunc("GET /api/console", s.apiConsole)
	s.mux = mux
	return s
}

// Token is the session token (for tests).
func (s *Server) Token() string { return s.token }

// LoginPath returns a new one-time path ("/?key=...") that gives the
// browser opening it the session cookie: `cloonix graph` prints it for
// the user, whose terminal is the proof of who they are.
func (s *Server) LoginPath() string {
	k := randomHex(32)
	s.failMu.Lock()
	s.keys[k] = true
	s.failMu.Unlock()
	return "/?key=" + k
}

// useKey consumes a one-time key.
func (s *Server) useKey(k string) bool {
	if k == "" {
		return false
	}
	s.failMu.Lock()
	defer s.failMu.Unlock()
	for v := range s.keys {
		if subtle.ConstantTimeCompare([]byte(v), []byte(k)) == 1 {
			delete(s.keys, v)
			return true
		}
	}
	return false
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName, Value: s.cookie, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// Run keeps the connection to the switch until stop is closed.
func (s *Server) Run(stop <-chan struct{}) { s.live.run(stop) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// IsLoopback tells whether a listen address ("host:port") stays on this
// machine.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeHTTP checks the Host header, sets the headers every answer gets,
// then dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opt.Loopback && !loopbackHost(r.Host) {
		http.Error(w, "this page answers only to localhost/127.0.0.1 (Host "+r.Host+" refused)", http.StatusMisdirectedRequest)
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // "no-referrer" would make form POSTs send Origin: null
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	s.mux.ServeHTTP(w, r)
}

// loopbackHost accepts localhost, 127.0.0.0/8 and ::1, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameOrigin requires an Origin header naming this very host: browsers
// always send it on cross-site POSTs and websockets, so a page of another
// site can change nothing here.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return errors.New("missing Origin header")
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("bad Origin %q", o)
	}
	if !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("cross-site request from %s refused", o)
	}
	return nil
}

func (s *Server) loggedIn(r *http.Request) bool {
	c, err := r.Cookie(s.cookieName)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.cookie)) == 1
}

// authorized checks the session token (header X-Cloonix-Token, or the
// token query parameter for websockets, which cannot set headers).
func (s *Server) authorized(r *http.Request) bool {
	t := r.Header.Get("X-Cloonix-Token")
	if t == "" {
		t = r.URL.Query().Get("token")
	}
	return s.loggedIn(r) && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// enterPage answers a one-time URL: a used or wrong key is refused unless
// the browser already has the session. It then moves to / by a page of
// its own rather than a redirect, so the move is a same-site navigation
// and the SameSite=Strict cookie goes with it whatever linked the URL.
func (s *Server) enterPage(w http.ResponseWriter, r *http.Request) {
	if !s.loggedIn(r) {
		if !s.useKey(r.URL.Query().Get("key")) {
			http.Error(w, "this one-time URL was already used or is wrong: run `cloonix graph` again, or use the browser that opened it first", http.StatusForbidden)
			return
		}
		s.setSession(w, r)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/"><title>cloonix graph</title><a href="/">open the page</a>`)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("key") {
		s.enterPage(w, r)
		return
	}
	if !s.loggedIn(r) {
		if s.opt.Password != "" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		http.Error(w, "open the URL `cloonix graph` printed: it carries a one-time key for this page", http.StatusForbidden)
		return
	}
	b, err := fs.ReadFile(s.assets, "index.html")
	if err != nil {
		http.Error(w, "page missing from the binary: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b = bytes.ReplaceAll(b, []byte("{{TOKEN}}"), []byte(s.token))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(s.assets, "login.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.URL.Query().Get("failed") != "" {
		b = bytes.Replace(b, []byte("<!--FAILED-->"), []byte(`<p role="alert" class="error">Wrong password.</p>`), 1)
	}
	_, _ = w.Write(b)
}

// maxFailures login failures per host per minute, then refusal, so the
// password cannot be guessed at network speed.
const maxFailures = 10

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	// The attempt counts before the body is read, so parallel guesses
	// are all counted and the ones beyond the limit never evaluated; a
	// right password gives its count back.
	now := time.Now()
	s.failMu.Lock()
	var recent []time.Time
	for _, t := range s.failures[host] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	full := len(recent) >= maxFailures
	if !full {
		recent = append(recent, now)
	}
	s.failures[host] = recent
	s.failMu.Unlock()
	if full {
		http.Error(w, "too many wrong passwords; wait a minute", http.StatusTooManyRequests)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	pw := r.PostFormValue("password")
	if s.opt.Password == "" || subtle.ConstantTimeCompare([]byte(pw), []byte(s.opt.Password)) != 1 {
		http.Redirect(w, r, "/login?failed=1", http.StatusSeeOther)
		return
	}
	s.failMu.Lock()
	if l := s.failures[host]; len(l) > 0 {
		s.failures[host] = l[:len(l)-1]
	}
	s.failMu.Unlock()
	s.setSession(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

var assetTypes = map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".map": "application/json"}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	typ := ""
	for ext, t := range assetTypes {
		if strings.HasSuffix(name, ext) {
			typ = t
		}
	}
	b, err := fs.ReadFile(s.assets, "dist/"+name)
	if err != nil || typ == "" || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", typ)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type callReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (s *Server) apiLab(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusForbidden, callReply{Error: "no valid session token; reload the page"})
		return
	}
	lab, err := s.live.list()
	if err != nil {
		writeJSON(w, http.StatusBadGateway, callReply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, lab)
}

// editVerbs are the only requests the page may send: edits of the lab.
var editVerbs = map[string]func() proto.Request{
	"add_lan":  func() proto.Request { return &proto.AddLan{} },
	"del_lan":  func() proto.Request { return &proto.DelLan{} },
	"attach":   func() proto.Request { return &proto.Attach{} },
	"detach":   func() proto.Request { return &proto.Detach{} },
	"add_vm":   func() proto.Request { return &proto.AddVM{} },
	"del_vm":   func() proto.Request { return &proto.DelVM{} },
	"add_tux":  func() proto.Request { return &proto.AddTux{} },
	"del_tux":  func() proto.Request { return &proto.DelTux{} },
	"set_pos":  func() proto.Request { return &proto.SetPos{} },
	"stop_vm":  func() proto.Request { return &proto.StopVM{} },
	"start_vm": func() proto.Request { return &proto.StartVM{} },
	"link":     func() proto.Request { return &proto.Link{} },
}

// argName keeps attribute names to what an XML attribute may be, so no
// argument can smuggle markup into the request sent to the switch.
var argName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

type callRequest struct {
	Verb string            `json:"verb"`
	Args map[string]string `json:"args"`
}

// checkCall validates a request from the page before it reaches the switch.
func checkCall(c callRequest) error {
	_, err := parseCall(c)
	return err
}

// parseCall is the typed, validated request the page asked for.
func parseCall(c callRequest) (proto.Request, error) {
	mk := editVerbs[c.Verb]
	if mk == nil {
		return nil, fmt.Errorf("request %q is not allowed from the page", c.Verb)
	}
	if len(c.Args) > 32 {
		return nil, errors.New("too many arguments")
	}
	if c.Verb == "add_vm" {
		if err := checkVMArgs(c.Args); err != nil {
			return nil, err
		}
	}
	for k, v := range c.Args {
		if !argName.MatchString(k) || k == "id" {
			return nil, fmt.Errorf("bad argument name %q", k)
		}
		if len(v) > 4096 {
			return nil, fmt.Errorf("argument %s is too long", k)
		}
	}
	req := mk()
	if err := proto.DecodeRequest(&proto.Msg{Name: c.Verb, Attrs: c.Args}, req); err != nil {
		return nil, err
	}
	return req, nil
}

// checkVMArgs keeps the page to images by name: a host path (demo folder,
// kernel, a rootfs tree or archive) is the command line's to give, where
// the user's own files are meant (docs/security.md).
func checkVMArgs(a map[string]string) error {
	for _, k := range []string{"demo", "kernel"} {
		if _, ok := a[k]; ok {
			return fmt.Errorf("add_vm %s: not from the page (use cloonix ctrl add vm or fconf load)", k)
		}
	}
	r := a["rootfs"]
	if strings.HasPrefix(r, "/") || strings.HasPrefix(r, ".") || strings.Contains(r, "/..") ||
		strings.HasPrefix(r, "oci:") || strings.HasPrefix(r, "docker-archive:") {
		return fmt.Errorf("add_vm rootfs %q: the page takes an image name from the bulk; host paths only from the command line", r)
	}
	return nil
}

func (s *Server) apiCall(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		writeJSON(w, http.StatusForbidden, callReply{Error: err.Error()})
		return
	}
	if !s.authorized(r) {
		writeJSON(w, http.StatusForbidden, callReply{Error: "no valid session token; reload the page"})
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, callReply{Error: "send application/json"})
		return
	}
	var req callRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, callReply{Error: "bad request: " + err.Error()})
		return
	}
	typed, err := parseCall(req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, callReply{Error: err.Error()})
		return
	}
	if err := s.live.call(typed); err != nil {
		writeJSON(w, http.StatusOK, callReply{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, callReply{OK: true})
}
