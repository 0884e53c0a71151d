package proto

import (
	"reflect"
	"strings"
	"testing"
)

// TestLifecycleRequests: the lifecycle verbs validate their attributes
// and keep their wire form through encode and decode.
func TestLifecycleRequests(t *testing.T) {
	for _, c := range []struct {
		req  Request
		m    *Msg
		want string
	}{
		{&StopVM{}, msg("stop_vm"), "needs attribute name"},
		{&StopVM{}, msg("stop_vm", "name", "a", "timeout", "0"), "timeout"},
		{&StopVM{}, msg("stop_vm", "name", "a", "timeout", "30"), ""},
		{&StartVM{}, msg("start_vm", "name", "a", "wait", "true"), ""},
		{&SaveVM{}, msg("save_vm", "name", "a"), "needs attribute file"},
		{&SaveVM{}, msg("save_vm", "name", "a", "file", "rel/x.img"), "absolute path"},
		{&SaveVM{}, msg("save_vm", "name", "a", "file", "/x.img"), ""},
		{&Link{}, msg("link", "port", "a:eth0", "state", "off"), "use up or down"},
		{&Link{}, msg("link", "state", "up"), "needs attribute port"},
		{&Link{}, msg("link", "port", "a:eth0", "state", "down"), ""},
		{&AddVM{}, msg("add_vm", "name", "a", "state", "paused"), "use running or stopped"},
		{&AddVM{}, msg("add_vm", "name", "a", "state", "stopped", "keep_disk", "true"), ""},
	} {
		err := DecodeRequest(c.m, c.req)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %v: %v, want %q", c.m.Name, c.m.Attrs, err, c.want)
		}
	}
	for _, c := range []struct {
		req   Request
		attrs map[string]string
	}{
		{&StopVM{Name: "a", Timeout: Int(5)}, map[string]string{"name": "a", "timeout": "5"}},
		{&SaveVM{Name: "a", File: "/s/a.img"}, map[string]string{"name": "a", "file": "/s/a.img"}},
		{&Link{Port: "a:eth0", State: "down"}, map[string]string{"port": "a:eth0", "state": "down"}},
		{&AddVM{Name: "a", State: "stopped", KeepDisk: true}, map[string]string{"name": "a", "state": "stopped", "keep_disk": "true"}},
	} {
		a, _, err := EncodeRequest(c.req)
		if err != nil || !reflect.DeepEqual(a, c.attrs) {
			t.Errorf("%T: %v %v, want %v", c.req, a, err, c.attrs)
		}
	}
	b, err := EncodeReply(&LinkReply{Port: "a:eth0", State: "down", Carrier: "guest"})
	if want := `<link port="a:eth0" state="down" carrier="guest"></link>`; err != nil || string(b) != want {
		t.Errorf("link reply %s %v, want %s", b, err, want)
	}
}
