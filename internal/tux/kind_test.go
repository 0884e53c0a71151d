package tux

import (
	"slices"
	"strings"
	"testing"

	"cloonix/internal/proto"
)

// TestKindChecks: each kind's Plan with today's bad inputs (those of the
// e2e TestTuxBadInput and the vxlan tests) and a good one.
func TestKindChecks(t *testing.T) {
	others := []Other{
		{Name: "tp", Kind: "tap", Options: []Option{{"ifname", "clxtuxes0"}}},
		{Name: "vx", Kind: "vxlan", Options: []Option{{"remote", "127.0.0.2"}, {"vni", "7"}, {"port", "4790"}}},
	}
	for _, tc := range []struct {
		kind string
		name string
		opts map[string]string
		pw   string
		want string // "" for a good spec
		args []string
	}{
		{"nope", "x", nil, "", "tux kind \"nope\": use slirp, t2t, tap, vxlan", nil},
		{"slirp", "s", map[string]string{"bogus": "1"}, "", "takes no option \"bogus\" (it takes: subnet)", nil},
		{"slirp", "s", nil, "", "", []string{"--subnet", "10.0.2.0/24", "--state", "/d/s.leases"}},
		{"slirp", "s", map[string]string{"subnet": "10.0.2.0/30"}, "", "/8 to /27", nil},
		{"slirp", "s", map[string]string{"subnet": "fd00::/64"}, "", "IPv4", nil},
		{"tap", "x", map[string]string{"ifname": "lo"}, "", "already exists", nil},
		{"tap", "x", map[string]string{"ifname": "bad/name"}, "", "interface name", nil},
		{"tap", "x", map[string]string{"ifname": "much-too-long-name"}, "", "1 to 15", nil},
		{"tap", "x", map[string]string{"ifname": "clxtuxes0"}, "", "belongs to tux tp", nil},
		{"tap", "clxtuxes1", nil, "", "", []string{"--ifname", "clxtuxes1"}},
		{"t2t", "x", map[string]string{"peer": "nohostport"}, "pw", "HOST:PORT", nil},
		{"t2t", "x", map[string]string{"peer": ":80"}, "pw", "HOST:PORT", nil},
		{"t2t", "x", map[string]string{"peer": "h:0"}, "pw", "HOST:PORT", nil},
		{"t2t", "x", map[string]string{"listen": "127.0.0.1:99999"}, "pw", "HOST:PORT", nil},
		{"t2t", "x", map[string]string{}, "pw", "exactly one of", nil},
		{"t2t", "x", map[string]string{"peer": "h:1", "listen": ":1"}, "pw", "exactly one of", nil},
		{"t2t", "x", map[string]string{"peer": "h:1"}, "", "needs a password", nil},
		{"t2t", "x", map[string]string{"listen": "127.0.0.1:0"}, "pw", "", []string{"--listen", "127.0.0.1:0"}},
		{"vxlan", "v", map[string]string{"vni": "1"}, "", "remote", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "16777216"}, "", "0 to 16777215", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "local": "192.0.2.77"}, "", "not an address of this host", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4790", "listen-any": "true"}, "", "is taken by vxlan tux vx", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4791", "listen-any": "true"}, "", "", []string{"--remote", "127.0.0.3", "--vni", "1", "--port", "4791"}},
		// Issue 15, finding 12: no wildcard bind unless asked; peers are
		// remotes with their source port.
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4791"}, "", "--listen-any", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4791", "listen-any": "true", "peers": "127.0.0.9:4791"}, "", "not one of the remotes", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4791", "listen-any": "true", "peers": "127.0.0.3"}, "", "IP:PORT", nil},
		{"vxlan", "v", map[string]string{"remote": "127.0.0.3", "vni": "1", "port": "4791", "listen-any": "true", "peers": "127.0.0.3:4791"}, "", "", []string{"--remote", "127.0.0.3", "--vni", "1", "--port", "4791", "--peers", "127.0.0.3:4791"}},
	} {
		s := &Spec{Name: tc.name, Kind: tc.kind, Options: tc.opts, Dir: "/d", Password: tc.pw, Others: others}
		_, p, err := Check(s)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s %s %v: %v", tc.kind, tc.name, tc.opts, err)
			} else if !slices.Equal(p.Args, tc.args) {
				t.Errorf("%s %s %v: args %q, want %q", tc.kind, tc.name, tc.opts, p.Args, tc.args)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s %v: error %v, want %q", tc.kind, tc.name, tc.opts, err, tc.want)
		}
	}
}

// TestT2TPasswordOffArgv: the password goes in the environment only.
func TestT2TPasswordOffArgv(t *testing.T) {
	_, p, err := Check(&Spec{Name: "x", Kind: "t2t", Options: map[string]string{"peer": "h:1", "password": "secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(p.Args, func(a string) bool { return strings.Contains(a, "secret") }) || !slices.Contains(p.Env, T2TPasswordEnv+"=secret") || !p.Strict {
		t.Fatalf("plan %+v", p)
	}
}

// TestKindsRegistry: every kind is found by its name, once.
func TestKindsRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Kinds {
		if seen[k.Name()] {
			t.Fatalf("kind %s twice", k.Name())
		}
		seen[k.Name()] = true
		if got, err := KindOf(k.Name()); err != nil || got != k {
			t.Fatalf("KindOf(%s) = %v, %v", k.Name(), got, err)
		}
	}
}

// TestKindsMatchProto: the kinds and each kind's flags are exactly
// proto.TuxKinds, the list topology files and clients check against.
func TestKindsMatchProto(t *testing.T) {
	var names []string
	for _, k := range Kinds {
		names = append(names, k.Name())
		want, ok := proto.TuxOptions(k.Name())
		if !ok {
			t.Errorf("kind %s is not in proto.TuxKinds", k.Name())
			continue
		}
		var flags []string
		for _, f := range k.Usage().Flags {
			flags = append(flags, f.Name)
		}
		if !slices.Equal(flags, want) {
			t.Errorf("kind %s: flags %v, proto.TuxKinds says %v", k.Name(), flags, want)
		}
	}
	if !slices.Equal(names, proto.TuxKindNames()) {
		t.Errorf("tux.Kinds %v, proto.TuxKinds %v", names, proto.TuxKindNames())
	}
}
