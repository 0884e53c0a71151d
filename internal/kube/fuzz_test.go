package kube

import (
	"strings"
	"testing"
)

// FuzzExecStatus: any status reply gives a code or an error, never a panic.
func FuzzExecStatus(f *testing.F) {
	f.Add([]byte(`{"status":"Success"}`))
	f.Add([]byte(`{"status":"Failure","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		code, err := execStatus(b)
		if err == nil && code < 0 {
			t.Fatalf("code %d without an error", code)
		}
	})
}

// FuzzKubeconfig: any file gives a client with a server, or an error.
func FuzzKubeconfig(f *testing.F) {
	f.Add("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
		"clusters: [{name: k, cluster: {server: 'https://x:6443', insecure-skip-tls-verify: true}}]\n" +
		"users: [{name: u, user: {token: abc}}]\n")
	f.Add("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: s, certificate-authority-data: '!!'}}]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseKubeconfig("/nonexistent/kubeconfig", []byte(s))
		if err == nil && (c == nil || c.Server == "" || strings.HasSuffix(c.Server, "/")) {
			t.Fatalf("client %+v without an error", c)
		}
	})
}

func TestKubeconfig(t *testing.T) {
	tests := []struct {
		text, server, err string
	}{
		{"current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
			"clusters: [{name: k, cluster: {server: 'https://x:6443/'}}]\nusers: [{name: u, user: {token: t}}]\n", "https://x:6443", ""},
		{"current-context: none\n", "", "names no context"},
		{"current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n", "", "has no server"},
		{"current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n" +
			"clusters: [{name: k, cluster: {server: s}}]\nusers: [{name: u, user: {client-certificate: missing.crt}}]\n", "", "client certificate"},
		{"{", "", "kubeconfig"},
	}
	for _, tt := range tests {
		c, err := parseKubeconfig("/nonexistent/kubeconfig", []byte(tt.text))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.text, err, tt.err)
			}
			continue
		}
		if err != nil || c.Server != tt.server {
			t.Errorf("%q: %v, %v", tt.text, c, err)
		}
	}
}
