package tux

import (
	"strings"
	"testing"
)

func TestPlanFor(t *testing.T) {
	for _, tc := range []struct {
		in, gw, dns, first, err string
	}{
		{in: "10.0.2.0/24", gw: "10.0.2.2", dns: "10.0.2.3", first: "10.0.2.15"},
		{in: "192.168.50.0/27", gw: "192.168.50.2", dns: "192.168.50.3", first: "192.168.50.15"},
		{in: "172.16.0.0/12", gw: "172.16.0.2", dns: "172.16.0.3", first: "172.16.0.15"},
		{in: "10.0.2.0/28", err: "/8 to /27"},
		{in: "10.0.2.1/24", err: "host bits"},
		{in: "fd00::/64", err: "IPv4"},
		{in: "10.0.2.0", err: "CIDR"},
		{in: "", err: "CIDR"},
	} {
		p, err := PlanFor(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || p.Gateway.String() != tc.gw || p.DNS.String() != tc.dns || p.First.String() != tc.first {
			t.Errorf("%q: %+v %v", tc.in, p, err)
		}
	}
}

func TestCheckForward(t *testing.T) {
	for _, tc := range []struct {
		proto, host, guest string
		ok                 bool
	}{
		{"tcp", "127.0.0.1:2222", "10.0.2.15:22", true},
		{"udp", ":5353", "10.0.2.15:53", true},
		{"tcp", "127.0.0.1:2222", "", true}, // del needs no guest
		{"sctp", "127.0.0.1:2222", "10.0.2.15:22", false},
		{"tcp", "127.0.0.1", "10.0.2.15:22", false},
		{"tcp", "127.0.0.1:0", "10.0.2.15:22", false},
		{"tcp", "127.0.0.1:70000", "10.0.2.15:22", false},
		{"tcp", "localhost:22", "10.0.2.15:22", false},
		{"tcp", "127.0.0.1:2222", "guest:22", false},
		{"tcp", "127.0.0.1:2222", "[fd00::1]:22", false},
		{"tcp", "127.0.0.1:022", "10.0.2.15:22", false},
	} {
		if err := CheckForward(tc.proto, tc.host, tc.guest); (err == nil) != tc.ok {
			t.Errorf("%s %s %s: %v", tc.proto, tc.host, tc.guest, err)
		}
	}
}

func TestCheckIfName(t *testing.T) {
	for n, ok := range map[string]bool{"tap0": true, "cloonix-tap.1": true, "": false, "0123456789abcdef": false,
		"a/b": false, "a b": false, "a:1": false, "..": false, "é": false} {
		if err := CheckIfName(n); (err == nil) != ok {
			t.Errorf("%q: %v", n, err)
		}
	}
}
