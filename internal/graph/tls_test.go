package graph

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSlowClientDropped (issue 15, finding 6): a client that sends its
// headers and then trickles nothing of its body is dropped by the
// server's ReadTimeout (shortened here), not held forever.
func TestSlowClientDropped(t *testing.T) {
	old := ReadTimeout
	ReadTimeout = 200 * time.Millisecond
	defer func() { ReadTimeout = old }()
	r := newRig(t, Options{Password: "s3cret"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := HTTPServer(r.srv, nil, nil)
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST /login HTTP/1.1\r\nHost: "+ln.Addr().String()+"\r\nOrigin: http://"+ln.Addr().String()+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\npass")
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a guard against hanging, not the check
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still holds a client that stopped sending (read %q)", b)
	}
}

// TestTLSAndPassword (finding 6): the self-signed certificate is made once
// (key 0600) and kept; HTTPS serves the page's login; passwords come from
// a file's first line or the environment.
func TestTLSAndPassword(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg")
	c1, err := SelfSigned(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := SelfSigned(dir)
	if err != nil || Fingerprint(c1) != Fingerprint(c2) || len(Fingerprint(c1)) != 64 {
		t.Fatalf("second use: %v, fingerprints %s %s", err, Fingerprint(c1), Fingerprint(c2))
	}
	if fi, err := os.Stat(filepath.Join(dir, "graph-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	r := newRig(t, Options{Password: "s3cret"})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", HTTPServer(r.srv, c1, nil).TLSConfig)
	if err != nil {
		t.Fatal(err)
	}
	hs := HTTPServer(r.srv, c1, nil)
	go hs.Serve(ln)
	defer hs.Close()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := cl.Get("https://" + ln.Addr().String() + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("login page over HTTPS: %d", resp.StatusCode)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pw, []byte("from-file\nignored\n"), 0o600)
	t.Setenv("CLOONIX_TEST_PW", "from-env")
	if p, err := ReadPassword(pw, "CLOONIX_TEST_PW"); p != "from-file" || err != nil {
		t.Errorf("password file: %q %v", p, err)
	}
	if p, _ := ReadPassword("", "CLOONIX_TEST_PW"); p != "from-env" {
		t.Errorf("password from the environment: %q", p)
	}
	_ = os.WriteFile(pw, []byte("\n"), 0o600)
	if _, err := ReadPassword(pw, "CLOONIX_TEST_PW"); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password file: %v", err)
	}
}
