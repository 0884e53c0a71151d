package graph

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestTokenOnlyToTheUser (issue 15, finding 1): a loopback client that did
// not open the one-time URL (another local user, a guest through a slirp
// gateway with a forged Host) gets neither the page nor its token, and
// the one-time URL works once.
func TestTokenOnlyToTheUser(t *testing.T) {
	r := newRig(t, Options{Loopback: true})
	get := func(c *http.Client, p string) (int, []byte, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("GET", r.url(p), nil)
		req.Host = "127.0.0.1:8080"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, b, resp
	}
	if code, b, _ := get(http.DefaultClient, "/"); code == 200 || bytes.Contains(b, []byte(r.srv.Token())) {
		t.Fatalf("GET / without the session: %d, token in answer: %v", code, bytes.Contains(b, []byte(r.srv.Token())))
	}
	if code, _ := r.post(http.DefaultClient, `{"verb":"add_lan","args":{"name":"x"}}`, map[string]string{"Origin": r.ts.URL, "X-Cloonix-Token": r.srv.Token()}); code != 403 {
		t.Errorf("call with the token but no session: %d", code)
	}
	p := r.srv.LoginPath()
	jar, _ := cookiejar.New(nil)
	user := &http.Client{Jar: jar}
	code, _, resp := get(user, p)
	if code != 200 {
		t.Fatalf("one-time URL: %d", code)
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		sess = c
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly and SameSite=Strict", sess)
	}
	if code, b, _ := get(user, "/"); code != 200 || !bytes.Contains(b, []byte(r.srv.Token())) {
		t.Fatalf("page after the one-time URL: %d", code)
	}
	// The key is spent: a second browser gets nothing from it.
	jar2, _ := cookiejar.New(nil)
	if code, b, _ := get(&http.Client{Jar: jar2}, p); code != 403 || bytes.Contains(b, []byte(r.srv.Token())) {
		t.Fatalf("one-time URL used twice: %d", code)
	}
	if code, _, _ := get(&http.Client{Jar: jar2}, "/?key=nope"); code != 403 {
		t.Fatalf("a made-up key: %d", code)
	}
}

// TestLoginCountsFirst (issue 15, finding 6): parallel guesses beyond the
// limit are refused before their password is even read. Every body is
// held back until all 60 requests have reached the server.
func TestLoginCountsFirst(t *testing.T) {
	r := newRig(t, Options{Password: "s3cret"})
	const n = 60
	var arrived atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		arrived.Add(1)
		r.srv.ServeHTTP(w, q)
	}))
	defer ts.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	bodies := make([]*io.PipeWriter, n)
	for i := 0; i < n; i++ {
		pr, pw := io.Pipe()
		bodies[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", ts.URL+"/login", pr)
			req.ContentLength = int64(len("password=guess"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", ts.URL)
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	for arrived.Load() < n {
		runtime.Gosched()
	}
	for _, pw := range bodies {
		go func() {
			_, _ = pw.Write([]byte("password=guess"))
			pw.Close()
		}()
	}
	wg.Wait()
	if codes[http.StatusSeeOther] != maxFailures || codes[http.StatusTooManyRequests] != n-maxFailures {
		t.Fatalf("%d parallel guesses: answers %v, want %d evaluated and the rest refused", n, codes, maxFailures)
	}
}

// TestPageVMArgs (issue 15, finding 3): the page names images, never host
// paths: no demo, no kernel, no rootfs path.
func TestPageVMArgs(t *testing.T) {
	for _, c := range []struct {
		args map[string]string
		ok   bool
	}{
		{map[string]string{"name": "A", "rootfs": "busybox"}, true},
		{map[string]string{"name": "A", "rootfs": "debian-frr", "type": "kvm"}, true},
		{map[string]string{"name": "A", "rootfs": "busybox", "demo": "/root/demo"}, false},
		{map[string]string{"name": "A", "rootfs": "busybox", "kernel": "/boot/vmlinuz"}, false},
		{map[string]string{"name": "A", "rootfs": "/etc"}, false},
		{map[string]string{"name": "A", "rootfs": "../../etc"}, false},
		{map[string]string{"name": "A", "rootfs": "oci:/var/lib/x"}, false},
		{map[string]string{"name": "A", "rootfs": "docker-archive:/tmp/x.tar"}, false},
	} {
		if err := checkCall(callRequest{"add_vm", c.args}); (err == nil) != c.ok {
			t.Errorf("add_vm %v: %v, want ok=%v", c.args, err, c.ok)
		}
	}
}
