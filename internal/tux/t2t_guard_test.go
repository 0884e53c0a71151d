package tux

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
)

// TestT2TListenerBounds (issue 15, finding 9): wrong guesses stop being
// answered after t2tMaxFails, refusals are logged at a bounded rate, and
// at most t2tMaxPending handshakes wait at once.
func TestT2TListenerBounds(t *testing.T) {
	l, err := startT2T(t, "the-secret", "--listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.h.ln.Addr().String()
	guess := func() (gotHello bool) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hello := make([]byte, helloLen)
		if _, err := io.ReadFull(c, hello); err != nil {
			return false
		}
		_, nonceL, err := parseHello(hello)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(encodeAuth([]byte("a-guess"), nonceL, newNonce()))
		_, _ = io.ReadAll(c) // the refusal, then the close
		return true
	}
	const n = 30
	answered := 0
	for i := 0; i < n; i++ {
		if guess() {
			answered++
		}
	}
	if answered != t2tMaxFails {
		t.Errorf("%d wrong guesses: %d answered, want %d then none", n, answered, t2tMaxFails)
	}
	for {
		l.h.guard.mu.Lock()
		r, logged := l.h.guard.refusals, l.h.guard.logged
		l.h.guard.mu.Unlock()
		if r == n {
			if logged > 2 {
				t.Errorf("%d refusals logged %d times, want a bounded rate", n, logged)
			}
			break
		}
		runtime.Gosched()
	}
	// Strangers that never answer hold at most t2tMaxPending slots.
	g := &t2tGuard{}
	for i := 0; i < t2tMaxPending; i++ {
		if err := g.admit("192.0.2.1"); err != nil {
			t.Fatalf("slot %d: %v", i, err)
		}
	}
	if err := g.admit("192.0.2.2"); err != errT2TBusy {
		t.Fatalf("slot beyond %d: %v", t2tMaxPending, err)
	}
	g.done("192.0.2.1", false)
	if err := g.admit("192.0.2.2"); err != nil {
		t.Fatalf("a freed slot: %v", err)
	}
}

// TestT2TOwnSecret (finding 9): by default a t2t link's secret is not the
// control password (a peer could otherwise drive the lab over TCP), yet
// two labs with the same <password> still agree on it.
func TestT2TOwnSecret(t *testing.T) {
	p, err := t2tKind{}.Plan(&Spec{Name: "x", Kind: "t2t", Options: map[string]string{"listen": "127.0.0.1:0"}, Password: "control-password"})
	if err != nil {
		t.Fatal(err)
	}
	want := T2TPasswordEnv + "=" + T2TSecret("control-password")
	if len(p.Env) != 1 || p.Env[0] != want || strings.Contains(p.Env[0], "control-password") {
		t.Fatalf("env %q, want %q", p.Env, want)
	}
	if T2TSecret("a") == T2TSecret("b") {
		t.Fatal("secrets of different passwords agree")
	}
	p, _ = t2tKind{}.Plan(&Spec{Name: "x", Kind: "t2t", Options: map[string]string{"listen": "127.0.0.1:0", "password": "given"}, Password: "control-password"})
	if p.Env[0] != T2TPasswordEnv+"=given" {
		t.Fatalf("a given password: %q", p.Env)
	}
}
