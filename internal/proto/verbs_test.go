package proto

import (
	"reflect"
	"strings"
	"testing"
)

// msg builds a request message from attribute pairs.
func msg(verb string, kv ...string) *Msg {
	m := &Msg{Name: verb, Attrs: map[string]string{"id": "1"}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Attrs[kv[i]] = kv[i+1]
	}
	return m
}

// TestValidate: each verb's bad inputs (those of the daemon's, the graph
// page's and the topology tests) get the error naming what is wrong;
// the good ones pass.
func TestValidate(t *testing.T) {
	long := strings.Repeat("x", 65)
	for _, c := range []struct {
		req  Request
		m    *Msg
		want string // "" for valid
	}{
		{&AddLan{}, msg("add_lan"), "needs attribute name"},
		{&AddLan{}, msg("add_lan", "name", ""), "needs attribute name"},
		{&AddLan{}, msg("add_lan", "name", "a/b"), "'/'"},
		{&AddLan{}, msg("add_lan", "name", ".."), `".."`},
		{&AddLan{}, msg("add_lan", "name", "a b"), "' '"},
		{&AddLan{}, msg("add_lan", "name", "a\tb"), `'\t'`},
		{&AddLan{}, msg("add_lan", "name", "lan_one"), ""},
		{&DelLan{}, msg("del_lan"), "needs attribute name"},
		{&AddPort{}, msg("add_port", "name", long), "limit is 64"},
		{&AddPort{}, msg("add_port", "name", "../../etc/x"), `".."`},
		{&AddPort{}, msg("add_port", "name", "p1", "kind", "dgram"), ""},
		{&DelPort{}, msg("del_port"), "needs attribute name"},
		{&Attach{}, msg("attach", "port", "p1"), "needs attribute lan"},
		{&Attach{}, msg("attach", "lan", "l"), "needs attribute port"},
		{&Attach{}, msg("attach", "port", "p1", "lan", "bad/lan"), "'/'"},
		{&Attach{}, msg("attach", "port", "A:eth0", "lan", "l"), ""},
		{&Detach{}, msg("detach", "port", "p1"), "needs attribute lan"},
		{&SetPos{}, msg("set_pos", "kind", "lan", "name", "lan_one", "x", "1"), "needs attributes x"},
		{&SetPos{}, msg("set_pos", "kind", "lan", "name", "lan_one", "x", "abc", "y", "1"), "whole number"},
		{&SetPos{}, msg("set_pos", "kind", "lan", "name", "lan_one", "x", "99999999", "y", "1"), "whole number"},
		{&SetPos{}, msg("set_pos", "name", "lan_one", "x", "1", "y", "1"), "needs attribute kind"},
		{&SetPos{}, msg("set_pos", "kind", "vm", "name", "A", "x", "1", "y", "-2"), ""},
		{&Impair{}, msg("impair", "spec", "loss=1%"), "needs one of port"},
		{&Impair{}, msg("impair", "port", "A", "lan", "l"), "needs one of port"},
		{&Impair{}, msg("impair", "port", "A", "dir", "up"), "use in, out or both"},
		{&Impair{}, msg("impair", "port", "A", "spec", "loss=1%", "clear", "true"), "not both"},
		{&Impair{}, msg("impair", "name", "A", "spec", "delay=10ms", "dir", "in"), ""},
		{&Capture{}, msg("capture"), "needs one of port"},
		{&Capture{}, msg("capture", "port", "A", "count", "-1"), "whole number"},
		{&Capture{}, msg("capture", "port", "A", "duration", "forever"), "duration"},
		{&Capture{}, msg("capture", "port", "A", "duration", "800h"), "up to a week"},
		{&Capture{}, msg("capture", "port", "A", "queue", "1"), "whole number"},
		{&Capture{}, msg("capture", "lan", "l", "count", "10", "duration", "5s"), ""},
		{&AddVM{}, msg("add_vm"), "needs attribute name"},
		{&AddVM{}, msg("add_vm", "name", "a/b"), "'/'"},
		{&AddVM{}, msg("add_vm", "name", "A", "type", "xen"), "use kvm or uml"},
		{&AddVM{}, msg("add_vm", "name", "A", "mem", "8"), "out of range"},
		{&AddVM{}, msg("add_vm", "name", "A", "mem", "lots"), "whole number"},
		{&AddVM{}, msg("add_vm", "name", "A", "cpu", "0"), "whole number"},
		{&AddVM{}, msg("add_vm", "name", "A", "type", "uml", "cpu", "2"), "one CPU"},
		{&AddVM{}, msg("add_vm", "name", "A", "eth", "33"), "from 0 to 32"},
		{&AddVM{}, msg("add_vm", "name", "A", "type", "uml", "transport", "slip"), "use bess or daemon"},
		{&AddVM{}, msg("add_vm", "name", "A", "transport", "bess"), "for UML guests only"},
		{&AddVM{}, msg("add_vm", "name", "A", "boot_timeout", "0"), "whole number"},
		{&AddVM{}, msg("add_vm", "name", "A", "type", "UML", "mem", "64", "eth", "0", "transport", "daemon", "wait", "true"), ""},
		{&DelVM{}, msg("del_vm"), "needs attribute name"},
		{&Exec{}, msg("exec", "name", "A"), "<arg> elements"},
		{&Exec{}, &Msg{Name: "exec", Attrs: map[string]string{"name": "A"}, Inner: []byte("<arg>ls</arg><stdin>!!</stdin>")}, "not base64"},
		{&Exec{}, &Msg{Name: "exec", Attrs: map[string]string{"name": "A", "timeout": "-3"}, Inner: []byte("<arg>ls</arg>")}, "whole number"},
		{&Exec{}, &Msg{Name: "exec", Attrs: map[string]string{"name": "A"}, Inner: []byte("<arg>ls</arg><stdin>aGk=</stdin>")}, ""},
		{&Console{}, msg("console"), "needs attribute name"},
		{&AddTux{}, msg("add_tux", "name", "t"), "needs attribute kind"},
		{&AddTux{}, msg("add_tux", "kind", "slirp"), "needs attribute name"},
		{&AddTux{}, msg("add_tux", "name", "t", "kind", "vxlan", "vni", "7"), ""},
		{&DelTux{}, msg("del_tux"), "needs attribute name"},
		{&ForwardAdd{}, msg("forward_add", "name", "nat", "host", ":2222"), "needs guest="},
		{&ForwardAdd{}, msg("forward_add", "host", ":2222", "guest", "10.0.2.15:22"), "needs attribute name"},
		{&ForwardDel{}, msg("forward_del"), "needs attribute name"},
	} {
		err := DecodeRequest(c.m, c.req)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %v: %v", c.m.Name, c.m.Attrs, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %v: error %v, want %q", c.m.Name, c.m.Attrs, err, c.want)
		}
		if c.req.Verb() != c.m.Name {
			t.Errorf("%T.Verb() = %q, want %q", c.req, c.req.Verb(), c.m.Name)
		}
	}
}

// TestRequestWire: a typed request encodes to today's attribute names and
// decodes back to the same value.
func TestRequestWire(t *testing.T) {
	tux := &AddTux{Name: "v", Kind: "vxlan"}
	tux.Option("vni", "7")
	tux.Option("remote", "1.2.3.4")
	for _, c := range []struct {
		req   Request
		attrs map[string]string
		inner string
	}{
		{&AddLan{Name: "l"}, map[string]string{"name": "l"}, ""},
		{&AddVM{Name: "A", Type: "uml", Mem: Int(64), Eth: Int(0), Transport: "daemon", Demo: "/d", Wait: true},
			map[string]string{"name": "A", "type": "uml", "mem": "64", "eth": "0", "transport": "daemon", "demo": "/d", "wait": "true"}, ""},
		{tux, map[string]string{"name": "v", "kind": "vxlan", "vni": "7", "remote": "1.2.3.4"}, ""},
		{&Impair{Target: Target{Port: "A:eth0"}, Clear: true}, map[string]string{"port": "A:eth0", "clear": "true"}, ""},
		{&SetPos{Kind: "vm", Name: "A", X: Int(0), Y: Int(-5)}, map[string]string{"kind": "vm", "name": "A", "x": "0", "y": "-5"}, ""},
		{&Exec{Name: "A", Args: []string{"echo", "a<b"}, Timeout: Int(3)}, map[string]string{"name": "A", "timeout": "3"}, "<arg>echo</arg><arg>a&lt;b</arg>"},
		{Ping, map[string]string{}, ""},
	} {
		a, inner, err := EncodeRequest(c.req)
		if err != nil {
			t.Fatalf("%T: %v", c.req, err)
		}
		if !reflect.DeepEqual(a, c.attrs) || string(inner) != c.inner {
			t.Errorf("%T: %v %q, want %v %q", c.req, a, inner, c.attrs, c.inner)
		}
		if _, ok := c.req.(Empty); ok {
			continue
		}
		back := reflect.New(reflect.TypeOf(c.req).Elem()).Interface().(Request)
		if err := DecodeRequest(&Msg{Name: c.req.Verb(), Attrs: a, Inner: inner}, back); err != nil {
			t.Errorf("%T: decode: %v", c.req, err)
		} else if a2, in2, _ := EncodeRequest(back); !reflect.DeepEqual(a2, a) || string(in2) != string(inner) {
			t.Errorf("%T: decoded %+v, want %+v", c.req, back, c.req)
		}
	}
}

// TestReplyWire: replies keep today's elements and attributes.
func TestReplyWire(t *testing.T) {
	lost := uint64(3)
	for _, c := range []struct {
		v    any
		want string
	}{
		{&PortReply{Name: "p", Socket: "/w/p.sock"}, `<port name="p" socket="/w/p.sock"></port>`},
		{&Pong{Pid: 7, Network: `a"b`}, `<pong pid="7" network="a&#34;b"></pong>`},
		{&VMReply{Name: "A", Pid: 9, State: "running", Accel: "kvm"}, `<vm name="A" pid="9" state="running" accel="kvm"></vm>`},
		{&ImpairReply{Ports: []Impaired{{Port: "A", Impair: "loss=1%"}, {Port: "B", Lost: &lost}}},
			`<impaired port="A" impair="loss=1%"></impaired><impaired port="B" impair="" lost="3"></impaired>`},
		{&ExecReply{Code: 2, Stdout: "aGk=", Truncated: true}, `<exec code="2" truncated="true"><stdout>aGk=</stdout><stderr></stderr></exec>`},
	} {
		b, err := EncodeReply(c.v)
		if err != nil || string(b) != c.want {
			t.Errorf("%T: %s, %v\nwant %s", c.v, b, err, c.want)
			continue
		}
		back := reflect.New(reflect.TypeOf(c.v).Elem()).Interface()
		err = DecodeReply("x", b, back)
		if b2, _ := EncodeReply(back); err != nil || string(b2) != string(b) {
			t.Errorf("%T: decoded %+v, %v", c.v, back, err)
		}
	}
}

// FuzzDecodeRequest: no message makes decoding panic, and what passes
// Validate encodes and decodes back to itself.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("add_vm", "name", "A", "mem", "")
	f.Add("set_pos", "x", "1", "y", "")
	f.Add("exec", "name", "A", "timeout", "<arg>ls</arg>")
	f.Add("add_tux", "name", "t", "kind", "")
	f.Fuzz(func(t *testing.T, verb, k1, v1, k2, inner string) {
		mk := map[string]func() Request{
			"add_vm": func() Request { return &AddVM{} }, "set_pos": func() Request { return &SetPos{} },
			"exec": func() Request { return &Exec{} }, "add_tux": func() Request { return &AddTux{} },
			"capture": func() Request { return &Capture{} },
		}[verb]
		if mk == nil {
			return
		}
		r := mk()
		m := &Msg{Name: verb, Attrs: map[string]string{k1: v1, k2: v1}, Inner: []byte(inner)}
		if DecodeRequest(m, r) != nil {
			return
		}
		a, in, err := EncodeRequest(r)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		again := mk()
		if err := DecodeRequest(&Msg{Name: verb, Attrs: a, Inner: in}, again); err != nil {
			t.Fatalf("%+v round trip: %v", r, err)
		}
		if a2, in2, _ := EncodeRequest(again); !reflect.DeepEqual(a2, a) || string(in2) != string(in) {
			t.Fatalf("%+v round trip: %+v", r, again)
		}
	})
}
