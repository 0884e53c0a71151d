package api

import (
	"reflect"
	"regexp"

	"cloonix/internal/proto"
)

// route is one endpoint over one typed verb of package proto. Path
// parameters ({name}) fill the request property of the same name; the
// body fills the others.
type route struct {
	method, path string
	summary      string
	new          func() proto.Request
	reply        func() any // the verb's reply payload; nil: none
}

// routes are the verbs the API offers as resources. Every typed verb is
// also at POST /api/v1/verbs/{verb} (verbTable).
var routes = []route{
	{"POST", "/api/v1/lans", "add a lan", func() proto.Request { return &proto.AddLan{} }, nil},
	{"DELETE", "/api/v1/lans/{name}", "delete a lan, detaching its ports", func() proto.Request { return &proto.DelLan{} }, nil},
	{"POST", "/api/v1/attach", "put a port (VM:ethN, a tux, a raw port) on a lan", func() proto.Request { return &proto.Attach{} }, nil},
	{"POST", "/api/v1/detach", "take a port off a lan", func() proto.Request { return &proto.Detach{} }, nil},
	{"POST", "/api/v1/vms", "add a VM (returns once it runs; with wait, once its agent answers)", func() proto.Request { return &proto.AddVM{} }, func() any { return &proto.VMReply{} }},
	{"DELETE", "/api/v1/vms/{name}", "delete a VM", func() proto.Request { return &proto.DelVM{} }, nil},
	{"POST", "/api/v1/vms/{name}/stop", "power a guest off, keeping its disk, ports and lans (hard stop after timeout seconds)", func() proto.Request { return &proto.StopVM{} }, nil},
	{"POST", "/api/v1/vms/{name}/start", "boot a stopped guest again from its kept disk", func() proto.Request { return &proto.StartVM{} }, nil},
	{"POST", "/api/v1/vms/{name}/save", "write a standalone image of the guest's disk to file (an absolute path on the switch's host)", func() proto.Request { return &proto.SaveVM{} }, func() any { return &proto.SavedReply{} }},
	{"POST", "/api/v1/links", "set a port's link down or up (carrier in the guest where its kind allows)", func() proto.Request { return &proto.Link{} }, func() any { return &proto.LinkReply{} }},
	{"POST", "/api/v1/tux", "add a tux (slirp, tap, t2t, vxlan) with its kind's options", func() proto.Request { return &proto.AddTux{} }, func() any { return &proto.TuxReply{} }},
	{"DELETE", "/api/v1/tux/{name}", "delete a tux", func() proto.Request { return &proto.DelTux{} }, nil},
	{"POST", "/api/v1/tux/{name}/forwards", "add a port forward to a slirp tux", func() proto.Request { return &proto.ForwardAdd{} }, nil},
	{"POST", "/api/v1/tux/{name}/forwards/delete", "remove a port forward of a slirp tux", func() proto.Request { return &proto.ForwardDel{} }, nil},
	{"POST", "/api/v1/ports", "add a raw port for an external program", func() proto.Request { return &proto.AddPort{} }, func() any { return &proto.PortReply{} }},
	{"DELETE", "/api/v1/ports/{name}", "delete a raw port", func() proto.Request { return &proto.DelPort{} }, nil},
	{"POST", "/api/v1/impairments", "set, clear or show the impairments of a port or lan (netem-like spec)", func() proto.Request { return &proto.Impair{} }, func() any { return &proto.ImpairReply{} }},
	{"POST", "/api/v1/positions", "set a node's position on the graph page", func() proto.Request { return &proto.SetPos{} }, nil},
}

// verbTable is every typed verb by name, for POST /api/v1/verbs/{verb}.
var verbTable = func() map[string]route {
	m := map[string]route{}
	for _, r := range routes {
		m[r.new().Verb()] = r
	}
	return m
}()

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// params are a path's parameter names.
func (r route) params() []string {
	var out []string
	for _, m := range pathParam.FindAllStringSubmatch(r.path, -1) {
		out = append(out, m[1])
	}
	return out
}

// reqType is the struct type of the route's request.
func (r route) reqType() reflect.Type { return reflect.TypeOf(r.new()).Elem() }
