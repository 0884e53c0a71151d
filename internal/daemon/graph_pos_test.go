package daemon

import (
	"strings"
	"testing"

	"cloonix/internal/config"
	"cloonix/internal/proto"
)

func TestSetPos(t *testing.T) {
	d := New(&config.Config{NetworkName: "t", WorkDir: t.TempDir()})
	t.Cleanup(func() { d.Stop(); d.closeVDE() }) // before TempDir's cleanup
	if err := d.Fab.AddLan("lan_one"); err != nil {
		t.Fatal(err)
	}
	req := func(attrs ...string) error {
		m := &proto.Msg{Name: "set_pos", Attrs: map[string]string{"id": "1"}}
		for i := 0; i+1 < len(attrs); i += 2 {
			m.Attrs[attrs[i]] = attrs[i+1]
		}
		return proto.ReplyError(d.handle(nil, m))
	}
	for _, c := range []struct {
		attrs []string
		err   string // "" for success, else a part of the error
	}{
		{[]string{"kind", "lan", "name", "lan_one", "x", "10", "y", "-20"}, ""},
		{[]string{"kind", "lan", "name", "nope", "x", "1", "y", "1"}, "no such lan"},
		{[]string{"kind", "vm", "name", "A", "x", "1", "y", "1"}, "no such vm"},
		{[]string{"kind", "port", "name", "lan_one", "x", "1", "y", "1"}, "use vm, lan or tux"},
		{[]string{"kind", "lan", "name", "../x", "x", "1", "y", "1"}, "may not contain"},
		{[]string{"kind", "lan", "name", "lan_one", "x", "1"}, "needs attributes x"},
		{[]string{"kind", "lan", "name", "lan_one", "x", "abc", "y", "1"}, "whole number"},
		{[]string{"kind", "lan", "name", "lan_one", "x", "99999999", "y", "1"}, "whole number"},
		{[]string{"name", "lan_one", "x", "1", "y", "1"}, "needs attribute kind"},
	} {
		err := req(c.attrs...)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("set_pos %v: %v, want %q", c.attrs, err, c.err)
		}
	}
	lab := d.Lab()
	if len(lab.Lans) != 1 || lab.Lans[0].X == nil || *lab.Lans[0].X != 10 || *lab.Lans[0].Y != -20 {
		t.Fatalf("list after set_pos: %+v", lab.Lans)
	}
	// A failed request changed nothing.
	if err := req("kind", "lan", "name", "lan_one", "x", "5", "y", "zzz"); err == nil {
		t.Fatal("bad y accepted")
	}
	if lab := d.Lab(); *lab.Lans[0].X != 10 {
		t.Fatalf("failed set_pos moved the lan: %d", *lab.Lans[0].X)
	}
}
