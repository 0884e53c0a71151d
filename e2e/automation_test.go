package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// freeMgmtNet picks a /24 of 172.31.0.0/16 that no host interface is on,
// so that this switch's management network is its own.
func freeMgmtNet(t *testing.T) netip.Prefix {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for x := 100; x < 250; x++ {
		p := netip.MustParsePrefix(fmt.Sprintf("172.31.%d.0/24", x))
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && p.Contains(ip) {
					used = true
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatal("no free /24 in 172.31.100-249.0 for the management network")
	return netip.Prefix{}
}

// automationLab starts a switch with a management network and an rsa
// key of its own, and two debian-frr UML guests.
func automationLab(t *testing.T) (*Lab, netip.Prefix, string) {
	for _, p := range []string{"ssh", "ssh-keygen", "ansible", "ping"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed (scripts/debian-packages.txt: make deps)", p)
		}
	}
	mnet := freeMgmtNet(t)
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "id_rsa")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	l := NewLab(t, fmt.Sprintf("<mgmt>%s</mgmt><rsa_public_key>%s.pub</rsa_public_key><no_nat>true</no_nat>", mnet, key))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	outs := make([]string, 2)
	for i, vm := range []string{"r1", "r2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = l.Run("ctrl", "add", "vm", vm, "--type", "uml", "--rootfs", "debian-frr", "--wait")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("add vm: %v\n%s", err, outs[i])
		}
	}
	return l, mnet, key
}

func TestAutomation(t *testing.T) {
	l, mnet, key := automationLab(t)
	lab := l.List()
	if lab.Mgmt == nil || lab.Mgmt.Net != mnet.String() {
		t.Fatalf("ctrl list --json: mgmt %+v, want net %s", lab.Mgmt, mnet)
	}
	addrs := map[string]string{}
	for _, v := range lab.VMs {
		p, err := netip.ParsePrefix(v.Mgmt)
		if err != nil || !mnet.Contains(p.Addr()) || p.Bits() != 24 {
			t.Fatalf("vm %s: .mgmt %q is not ADDR/24 in %s", v.Name, v.Mgmt, mnet)
		}
		addrs[v.Name] = p.Addr().String()
	}
	for _, p := range lab.Ports {
		if strings.HasPrefix(p.Name, "mgmt") || strings.HasSuffix(p.Name, ":mgmt0") {
			t.Errorf("management port %s listed among the ports", p.Name)
		}
	}
	if out, err := l.Run("ctrl", "attach", "r1:mgmt0", "data"); err == nil || !strings.Contains(out, "management network") {
		t.Errorf("attaching mgmt0 to a lan: %v %s", err, out)
	}

	t.Run("ping", func(t *testing.T) {
		for vm, a := range addrs {
			if out, err := exec.Command("ping", "-c", "2", "-W", "5", a).CombinedOutput(); err != nil {
				t.Errorf("the host pings %s at %s: %v\n%s", vm, a, err, out)
			}
		}
	})
	t.Run("ssh-config", func(t *testing.T) {
		// OpenSSH closes inherited descriptors before it reads -F, so the
		// config goes through a file (docs/automation.md), not <(...).
		cfg := filepath.Join(t.TempDir(), "ssh_config")
		cmd := exec.Command("bash", "-c", fmt.Sprintf("%s -c %s inventory --format ssh-config > %s && ssh -F %s -o BatchMode=yes -o ConnectTimeout=20 r2 hostname", bin, l.Config, cfg, cfg))
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "r2" {
			t.Fatalf("ssh -F FILE r2 hostname, FILE from cloonix inventory --format ssh-config: %v\n%s", err, out)
		}
	})
	t.Run("ansible", func(t *testing.T) {
		inv := filepath.Join(t.TempDir(), "inventory.yml")
		if err := os.WriteFile(inv, []byte(l.MustRun("inventory", "--format", "ansible")), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ansible", "all", "-i", inv, "-m", "raw", "-a", "hostname", "--timeout", "30")
		cmd.Env = append(os.Environ(), "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_REMOTE_TEMP=/tmp")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ansible all -m raw -a hostname: %v\n%s", err, out)
		}
		for _, vm := range []string{"r1", "r2"} {
			if !strings.Contains(string(out), vm+" | CHANGED | rc=0 >>\n"+vm) {
				t.Errorf("ansible: no answer from %s:\n%s", vm, out)
			}
		}
		js := l.MustRun("inventory", "--format", "json")
		if !strings.Contains(js, `"address": "`+addrs["r1"]+`"`) || !strings.Contains(js, `"key": "`+key+`"`) {
			t.Errorf("inventory --format json:\n%s", js)
		}
	})
	t.Run("host listeners closed", func(t *testing.T) {
		host := lab.Mgmt.Host
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		out, _ := l.Run("exec", "r1", "--", "sh", "-c", fmt.Sprintf("nc -z -w 3 %s %s && echo OPEN || echo CLOSED", host, port))
		if !strings.Contains(out, "CLOSED") {
			t.Fatalf("a guest opened the host's %s:%s through the management network: %s", host, port, out)
		}
		select {
		case <-accepted:
			t.Fatal("the host's listener accepted a guest's connection")
		default:
		}
	})
	t.Run("api", func(t *testing.T) { apiChecks(t, l) })
}

// startAPI runs `cloonix api` on a free loopback port; it returns the
// base URL and the token.
func startAPI(t *testing.T, l *Lab) (string, string) {
	cmd := exec.Command(bin, "-c", l.Config, "api", "--listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	var url, tokPath string
	for tokPath == "" && sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "http://") {
			url = strings.TrimSuffix(line, "/")
		}
		if p, ok := strings.CutPrefix(line, "token "); ok {
			tokPath = p
		}
	}
	go io.Copy(io.Discard, out)
	if url == "" || tokPath == "" {
		t.Fatalf("cloonix api printed no URL and token path")
	}
	fi, err := os.Stat(tokPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v %v", tokPath, fi.Mode(), err)
	}
	tok, _ := os.ReadFile(tokPath)
	return url, strings.TrimSpace(string(tok))
}

// apiDo makes one API request; the reply must be JSON.
func apiDo(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not JSON (%v): %s", method, url, err, b)
	}
	return resp.StatusCode, m
}

func apiChecks(t *testing.T, l *Lab) {
	base, tok := startAPI(t, l)
	if code, m := apiDo(t, "GET", base+"/lab", "", ""); code != 401 || m["error"] == nil {
		t.Fatalf("no token: %d %v", code, m)
	}
	code, m := apiDo(t, "GET", base+"/lab", tok, "")
	if vms, _ := m["vms"].([]any); code != 200 || len(vms) != 2 {
		t.Fatalf("GET /lab: %d %v", code, m)
	}

	// The event stream, read from the start.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := <-lines; l != ": cloonix events" {
		t.Fatalf("event stream starts with %q", l)
	}

	before := len(l.List().Lans)
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/verbs/frobnicate", `{"name":"x"}`},
		{"POST", "/lans", `{"name":`},
		{"POST", "/lans", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`},
		{"POST", "/lans", `{"name":"bad name"}`},
	} {
		code, m := apiDo(t, bad.method, base+bad.path, tok, bad.body)
		if code < 400 || m["error"] == nil {
			t.Errorf("%s %s: %d %v, want a JSON error", bad.method, bad.path, code, m)
		}
	}
	if n := len(l.List().Lans); n != before {
		t.Fatalf("bad requests changed the lans: %d -> %d", before, n)
	}

	if code, m := apiDo(t, "POST", base+"/lans", tok, `{"name":"apilan"}`); code != 200 || m["ok"] != true {
		t.Fatalf("POST /lans: %d %v", code, m)
	}
	seen := false
	for !seen {
		line, ok := <-lines
		if !ok {
			t.Fatal("the event stream ended before lan_added apilan")
		}
		seen = strings.HasPrefix(line, "data: ") && strings.Contains(line, `"lan_added"`) && strings.Contains(line, `"apilan"`)
	}
	if code, m := apiDo(t, "POST", base+"/lans", tok, `{"name":"apilan"}`); code != 400 || !strings.Contains(fmt.Sprint(m["error"]), "already exists") {
		t.Errorf("adding apilan twice: %d %v", code, m)
	}
	code, m = apiDo(t, "POST", base+"/vms/r1/exec", tok, `{"cmd":["sh","-c","cat; echo err >&2; exit 7"],"stdin":"xyz"}`)
	if code != 200 || m["stdout"] != "xyz" || m["stderr"] != "err\n" || m["code"] != float64(7) {
		t.Fatalf("exec: %d %v", code, m)
	}

	resp2, err := http.DefaultClient.Do(func() *http.Request {
		r, _ := http.NewRequest("GET", base+"/openapi.json", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	d, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(context.Background()); err != nil {
		t.Fatalf("GET /openapi.json does not validate: %v", err)
	}
}
