package daemon

import (
	"os"
	"strings"
	"testing"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

func TestImpairVerb(t *testing.T) {
	// Not t.TempDir: lans make VDE directories there in the background.
	dir, err := os.MkdirTemp("", "clx-impair")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d := New(&config.Config{NetworkName: "t", WorkDir: dir})
	defer d.Fab.Close()
	for _, p := range []string{"A", "B", "both"} {
		if _, err := d.Fab.AddPort(p, "stream"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"A", "B"} {
		if err := d.Fab.Attach(p, "lan"); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Fab.AddLan("both"); err != nil { // a lan named like a port
		t.Fatal(err)
	}
	if err := d.Fab.AddLan("empty"); err != nil {
		t.Fatal(err)
	}
	req := func(attrs ...string) error {
		m := &proto.Msg{Name: "impair", Attrs: map[string]string{"id": "1"}}
		for i := 0; i+1 < len(attrs); i += 2 {
			m.Attrs[attrs[i]] = attrs[i+1]
		}
		return proto.ReplyError(d.handle(nil, m))
	}
	state := func() string {
		return "A[" + d.PortImpair("A") + "] B[" + d.PortImpair("B") + "]"
	}
	for _, c := range []struct {
		attrs []string
		err   string // "" for success, else a part of the error
		after string // the state after
	}{
		{[]string{"name", "A", "spec", "delay=10ms"}, "", "A[delay=10ms] B[]"},
		{[]string{"name", "A", "spec", "loss=5%", "dir", "in"}, "", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "A", "spec", "rate=0mbit"}, "above 0", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "A", "spec", "in loss=1%", "dir", "out"}, "sections", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "A", "dir", "sideways", "spec", "down"}, "use in, out or both", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "A", "clear", "true", "spec", "down"}, "not both", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "nope", "spec", "down"}, "no such port or lan", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"port", "nope", "spec", "down"}, "no such port", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"lan", "nope", "spec", "down"}, "no such lan", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"name", "both", "spec", "down"}, "both a port and a lan", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"lan", "empty", "spec", "down"}, "no ports", "A[in loss=5% out delay=10ms] B[]"},
		{[]string{"port", "A", "lan", "lan", "spec", "down"}, "one of", "A[in loss=5% out delay=10ms] B[]"},
		// A lan: on the way out of each port by default.
		{[]string{"name", "lan", "spec", "down"}, "", "A[in loss=5% out down] B[out down]"},
		{[]string{"lan", "lan", "spec", "rate=1mbit", "dir", "in"}, "", "A[in rate=1mbit out down] B[in rate=1mbit out down]"},
		{[]string{"name", "lan", "clear", "true"}, "", "A[in rate=1mbit] B[in rate=1mbit]"},
		{[]string{"name", "lan", "clear", "true", "dir", "both"}, "", "A[] B[]"},
		{[]string{"port", "A", "spec", "in loss=1% out delay=1ms seed=4"}, "", "A[in loss=1% out delay=1ms seed=4] B[]"},
		{[]string{"port", "A", "clear", "true", "dir", "out"}, "", "A[in loss=1%] B[]"},
	} {
		err := req(c.attrs...)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("impair %v: %v", c.attrs, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("impair %v: error %v, want one mentioning %q", c.attrs, err, c.err)
		}
		if s := state(); s != c.after {
			t.Errorf("after impair %v: %s, want %s", c.attrs, s, c.after)
		}
	}
	// list shows it on the port.
	lab := d.Lab()
	for _, p := range lab.Ports {
		if p.Name == "A" && p.Impair != "in loss=1%" {
			t.Errorf("list: port A impair %q", p.Impair)
		}
	}
	// Show: settings and counters, nothing changed.
	m := &proto.Msg{Name: "impair", Attrs: map[string]string{"id": "1", "name": "A"}}
	r := d.handle(nil, m)
	if proto.ReplyError(r) != nil || !strings.Contains(string(r.Inner), `impair="in loss=1%"`) || !strings.Contains(string(r.Inner), `lost="0"`) {
		t.Errorf("show: %s", r.Inner)
	}
	if err := d.SetImpair("B", "bogus"); err == nil {
		t.Error("SetImpair accepted bogus settings")
	}
	if err := d.SetImpair("B", "delay=1ms"); err != nil || d.PortImpair("B") != "delay=1ms" {
		t.Errorf("SetImpair: %v, %q", err, d.PortImpair("B"))
	}
}
