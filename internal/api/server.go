// Package api serves the switch's verbs as a JSON HTTP API under
// /api/v1/ (docs/automation.md): the lab, lans, attach and detach, VMs,
// tux, impairments, exec, server-sent events and the OpenAPI 3 document
// of it all. It is a client of the switch over package proto, like the
// graph page; every request and reply is one of proto's typed verbs,
// read off their XML names (schema.go), so the three never disagree.
//
// Security: every request needs the bearer token of work_dir's api.token
// (0600); bodies are capped; errors are JSON {"error": "..."} with the
// switch's own sentences.
package api

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"cloonix/internal/proto"
)

// Switch is what the API needs of a switch connection; *proto.Client
// has it.
type Switch interface {
	Do(req proto.Request, reply any) error
	List() (*proto.Lab, error)
	Subscribe() (<-chan proto.Event, error)
	Close() error
}

// DefaultMaxBody caps request bodies (exec's stdin included).
const DefaultMaxBody = 1 << 20

// Options configure a Server.
type Options struct {
	Dial    func() (Switch, error) // one connection per request
	Token   string                 // the bearer token
	MaxBody int64                  // 0: DefaultMaxBody
	Logf    func(format string, args ...any)
}

// Server is the API's http.Handler.
type Server struct {
	opt Options
	mux *http.ServeMux
	doc []byte // the OpenAPI document
}

// New makes the API server.
func New(opt Options) (*Server, error) {
	if len(opt.Token) < 16 {
		return nil, errors.New("api: a bearer token of 16 characters or more is required")
	}
	if opt.MaxBody <= 0 {
		opt.MaxBody = DefaultMaxBody
	}
	if opt.Logf == nil {
		opt.Logf = log.Printf
	}
	doc, err := json.MarshalIndent(OpenAPI(), "", "  ")
	if err != nil {
		return nil, err
	}
	s := &Server{opt: opt, mux: http.NewServeMux(), doc: doc}
	s.mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.doc)
	})
	s.mux.HandleFunc("GET /api/v1/lab", s.lab)
	s.mux.HandleFunc("GET /api/v1/events", s.events)
	s.mux.HandleFunc("POST /api/v1/vms/{name}/exec", s.exec)
	s.mux.HandleFunc("POST /api/v1/verbs/{verb}", s.verb)
	for _, rt := range routes {
		s.mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) { s.call(w, r, rt) })
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s; see GET /api/v1/openapi.json", r.Method, r.URL.Path))
	})
	return s, nil
}

// ServeHTTP checks the token, then serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.opt.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cloonix"`)
		fail(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token: send Authorization: Bearer TOKEN (the token is in work_dir/api.token; `cloonix api` prints its path)"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opt.MaxBody)
	s.mux.ServeHTTP(w, r)
}

// apiError is every error's body.
type apiError struct {
	Error string `json:"error"`
}

func fail(w http.ResponseWriter, code int, err error) {
	reply(w, code, apiError{Error: err.Error()})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false) // errors quote XML verbs: keep <exec> readable
	_ = e.Encode(v)
}

// readBody reads the capped body; too large is 413.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is over %d bytes", mb.Limit))
		} else {
			fail(w, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err))
		}
		return nil, false
	}
	return b, true
}

// do sends req to the switch; errors are the switch's sentences (400),
// or 502 when the switch does not answer.
func (s *Server) do(w http.ResponseWriter, req proto.Request, out any) bool {
	if err := req.Validate(); err != nil {
		fail(w, http.StatusBadRequest, err)
		return false
	}
	c, err := s.opt.Dial()
	if err != nil {
		fail(w, http.StatusBadGateway, fmt.Errorf("the switch does not answer: %v", err))
		return false
	}
	defer c.Close()
	if err := c.Do(req, out); err != nil {
		fail(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

// call serves one route: path and body to the typed request, the reply
// (or {"ok":true}) back.
func (s *Server) call(w http.ResponseWriter, r *http.Request, rt route) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req := rt.new()
	path := map[string]string{}
	for _, p := range rt.params() {
		path[p] = r.PathValue(p)
	}
	if err := decodeInto(req, body, path); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("%s %s: %v", r.Method, r.URL.Path, err))
		return
	}
	var out any
	if rt.reply != nil {
		out = rt.reply()
	}
	if !s.do(w, req, out) {
		return
	}
	if out == nil {
		reply(w, http.StatusOK, map[string]bool{"ok": true})
		return
	}
	reply(w, http.StatusOK, encode(reflect.ValueOf(out)))
}

// verb is POST /api/v1/verbs/{verb}: any typed verb by its XML name.
func (s *Server) verb(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("verb")
	rt, ok := verbTable[v]
	if !ok {
		var names []string
		for n := range verbTable {
			names = append(names, n)
		}
		sort.Strings(names)
		fail(w, http.StatusNotFound, fmt.Errorf("unknown verb %q; known: %s", v, strings.Join(names, ", ")))
		return
	}
	rt.path = "" // every property comes from the body
	s.call(w, r, rt)
}

func (s *Server) lab(w http.ResponseWriter, r *http.Request) {
	c, err := s.opt.Dial()
	if err != nil {
		fail(w, http.StatusBadGateway, fmt.Errorf("the switch does not answer: %v", err))
		return
	}
	defer c.Close()
	lab, err := c.List()
	if err != nil {
		fail(w, http.StatusBadGateway, err)
		return
	}
	reply(w, http.StatusOK, lab)
}

// ExecRequest is POST /api/v1/vms/{name}/exec's body.
type ExecRequest struct {
	Cmd     []string `json:"cmd"`
	Stdin   string   `json:"stdin,omitempty"`
	Timeout *int     `json:"timeout,omitempty"` // seconds
}

// ExecResult is its reply: the command's output and exit code.
type ExecResult struct {
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Code      int    `json:"code"`
	Truncated bool   `json:"truncated,omitempty"`
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var er ExecRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&er); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("exec: the body must be {\"cmd\":[...],\"stdin\":\"...\",\"timeout\":N}: %v", err))
		return
	}
	req := &proto.Exec{Name: r.PathValue("name"), Args: er.Cmd, Timeout: er.Timeout, Stdin: base64.StdEncoding.EncodeToString([]byte(er.Stdin))}
	var out proto.ExecReply
	if !s.do(w, req, &out) {
		return
	}
	res := ExecResult{Code: out.Code, Truncated: out.Truncated}
	for _, p := range []struct {
		in  string
		out *string
	}{{out.Stdout, &res.Stdout}, {out.Stderr, &res.Stderr}} {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(p.in))
		if err != nil {
			fail(w, http.StatusBadGateway, fmt.Errorf("exec: bad reply from the switch: %v", err))
			return
		}
		*p.out = string(b)
	}
	reply(w, http.StatusOK, res)
}

// events streams the switch's events as server-sent events: one
// "data: {type, attrs}" per event, a comment every 15 s to keep proxies
// from closing the stream.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, errors.New("streaming is not supported here"))
		return
	}
	c, err := s.opt.Dial()
	if err != nil {
		fail(w, http.StatusBadGateway, fmt.Errorf("the switch does not answer: %v", err))
		return
	}
	defer c.Close()
	evs, err := c.Subscribe()
	if err != nil {
		fail(w, http.StatusBadGateway, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": cloonix events\n\n")
	fl.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case e, ok := <-evs:
			if !ok {
				return
			}
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, b)
		}
		fl.Flush()
	}
}
