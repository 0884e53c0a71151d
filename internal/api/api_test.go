package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"cloonix/internal/proto"
)

// fakeSwitch records the requests it gets and answers like a switch.
type fakeSwitch struct {
	mu   sync.Mutex
	reqs []proto.Request
}

func (f *fakeSwitch) Do(req proto.Request, reply any) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	switch r := req.(type) {
	case *proto.AddLan:
		if r.Name == "taken" {
			return errors.New(`lan "taken" already exists`)
		}
	case *proto.Exec:
		in, _ := r.StdinBytes()
		out := reply.(*proto.ExecReply)
		out.Code = 3
		out.Stdout = base64.StdEncoding.EncodeToString(append([]byte(strings.Join(r.Args, " ")+":"), in...))
	case *proto.AddVM:
		*reply.(*proto.VMReply) = proto.VMReply{Name: r.Name, Pid: 42, State: "booting"}
	case *proto.Link:
		*reply.(*proto.LinkReply) = proto.LinkReply{Port: r.Port, State: r.State, Carrier: "guest"}
	}
	return nil
}
func (f *fakeSwitch) List() (*proto.Lab, error) {
	return &proto.Lab{Network: "n", VMs: []proto.VM{{Name: "r1", Mgmt: "172.30.0.9/24"}}}, nil
}
func (f *fakeSwitch) Subscribe() (<-chan proto.Event, error) {
	ch := make(chan proto.Event, 1)
	ch <- proto.Event{Type: "lan_added", Attrs: map[string]string{"name": "l1"}}
	close(ch)
	return ch, nil
}
func (f *fakeSwitch) Close() error { return nil }

const token = "0123456789abcdef0123456789abcdef"

func newTest(t *testing.T) (*httptest.Server, *fakeSwitch) {
	f := &fakeSwitch{}
	s, err := New(Options{Token: token, MaxBody: 4096, Dial: func() (Switch, error) { return f, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, f
}

func call(t *testing.T, ts *httptest.Server, method, path, body, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: the reply is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, m
}

func TestAPI(t *testing.T) {
	ts, f := newTest(t)
	big := `{"name":"` + strings.Repeat("a", 5000) + `"}`
	for _, tc := range []struct {
		name, method, path, body, tok string
		code                          int
		want                          string // in the reply's JSON
	}{
		{"no token", "GET", "/api/v1/lab", "", "", 401, "bearer token"},
		{"wrong token", "GET", "/api/v1/lab", "", "x" + token[1:], 401, "bearer token"},
		{"lab", "GET", "/api/v1/lab", "", token, 200, `172.30.0.9/24`},
		{"add lan", "POST", "/api/v1/lans", `{"name":"l1"}`, token, 200, `"ok":true`},
		{"switch error", "POST", "/api/v1/lans", `{"name":"taken"}`, token, 400, `already exists`},
		{"bad name", "POST", "/api/v1/lans", `{"name":"a b"}`, token, 400, `lan name`},
		{"bad json", "POST", "/api/v1/lans", `{"name":`, token, 400, `not a JSON object`},
		{"unknown property", "POST", "/api/v1/lans", `{"nme":"x"}`, token, 400, `unknown property`},
		{"wrong type", "POST", "/api/v1/vms", `{"name":"r1","mem":"lots"}`, token, 400, `whole number`},
		{"oversized", "POST", "/api/v1/lans", big, token, 413, `over 4096 bytes`},
		{"unknown verb", "POST", "/api/v1/verbs/frob", `{}`, token, 404, `unknown verb`},
		{"unknown path", "GET", "/api/v1/nothing", ``, token, 404, `no endpoint`},
		{"add vm", "POST", "/api/v1/vms", `{"name":"r1","type":"uml","mem":128}`, token, 200, `"pid":42`},
		{"generic verb", "POST", "/api/v1/verbs/attach", `{"port":"r1:eth0","lan":"l1"}`, token, 200, `"ok":true`},
		{"exec", "POST", "/api/v1/vms/r1/exec", `{"cmd":["cat"],"stdin":"hi"}`, token, 200, `"stdout":"cat:hi"`},
		{"exec without cmd", "POST", "/api/v1/vms/r1/exec", `{}`, token, 400, `needs the command`},
		{"stop vm", "POST", "/api/v1/vms/r1/stop", `{"timeout":5}`, token, 200, `"ok":true`},
		{"stop vm bad timeout", "POST", "/api/v1/vms/r1/stop", `{"timeout":0}`, token, 400, `timeout`},
		{"start vm", "POST", "/api/v1/vms/r1/start", `{"wait":true}`, token, 200, `"ok":true`},
		{"save vm relative", "POST", "/api/v1/vms/r1/save", `{"file":"r1.img"}`, token, 400, `absolute path`},
		{"link bad state", "POST", "/api/v1/links", `{"port":"r1:eth0","state":"sideways"}`, token, 400, `use up or down`},
		{"link down", "POST", "/api/v1/links", `{"port":"r1:eth0","state":"down"}`, token, 200, `"carrier":"guest"`},
		{"delete lan", "DELETE", "/api/v1/lans/l1", ``, token, 200, `"ok":true`},
	} {
		code, m := call(t, ts, tc.method, tc.path, tc.body, tc.tok)
		b, _ := json.Marshal(m)
		if code != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s; want %d with %s", tc.name, code, b, tc.code, tc.want)
		}
	}
	// Only the valid requests reached the switch, as typed verbs.
	var got []string
	for _, r := range f.reqs {
		b, _ := json.Marshal(r)
		got = append(got, r.Verb()+string(b))
	}
	want := []string{"add_lan", "add_lan", "add_vm", "attach", "exec", "stop_vm", "start_vm", "link", "del_lan"}
	if len(got) != len(want) {
		t.Fatalf("the switch got %v", got)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("the switch got %v, want verbs %v", got, want)
		}
	}
	if a := f.reqs[3].(*proto.Attach); a.Port != "r1:eth0" || a.Lan != "l1" {
		t.Fatalf("attach %+v", a)
	}
	if v := f.reqs[2].(*proto.AddVM); v.Mem == nil || *v.Mem != 128 || v.Type != "uml" {
		t.Fatalf("add_vm %+v", v)
	}
	if v := f.reqs[5].(*proto.StopVM); v.Name != "r1" || v.Timeout == nil || *v.Timeout != 5 {
		t.Fatalf("stop_vm %+v", v)
	}
	if v := f.reqs[6].(*proto.StartVM); v.Name != "r1" || !v.Wait {
		t.Fatalf("start_vm %+v", v)
	}
}

func TestEvents(t *testing.T) {
	ts, _ := newTest(t)
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(b.String(), "event: lan_added\ndata: {\"type\":\"lan_added\",\"attrs\":{\"name\":\"l1\"}}\n\n") {
		t.Fatalf("%s\n%s", resp.Header, b.String())
	}
}

// TestOpenAPIValidates checks the document with an OpenAPI 3 validator,
// and that it describes every route.
func TestOpenAPIValidates(t *testing.T) {
	b, err := json.Marshal(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("invalid OpenAPI document: %v", err)
	}
	for _, rt := range routes {
		p := doc.Paths.Find(rt.path)
		if p == nil || p.GetOperation(rt.method) == nil {
			t.Errorf("%s %s is not in the document", rt.method, rt.path)
		}
	}
	vm := doc.Paths.Find("/api/v1/vms").Post.RequestBody.Value.Content["application/json"].Schema.Value
	for _, prop := range []string{"name", "type", "mem", "cpu", "eth", "rootfs", "mgmt_ip", "wait"} {
		if vm.Properties[prop] == nil {
			t.Errorf("add_vm's schema lacks %s", prop)
		}
	}
	if vm.Properties["mem"].Value.Type.Is("integer") == false {
		t.Errorf("mem is %v", vm.Properties["mem"].Value.Type)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"x"}`, `{"options":{"a":"b"}}`, `{"mem":1}`, `[]`, `{"arg":["a"]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, rt := range verbTable {
			req := rt.new()
			if decodeInto(req, []byte(body), nil) == nil {
				_ = req.Validate()
				encode(reflect.ValueOf(req))
			}
		}
	})
}
