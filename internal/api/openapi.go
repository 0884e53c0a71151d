package api

import (
	"reflect"
	"strings"

	"cloonix/internal/proto"
)

// OpenAPI is the API's OpenAPI 3 document, made from the routes and the
// typed verbs' structs (the same reflection that reads requests), so it
// cannot drift from what the server takes.
func OpenAPI() map[string]any {
	paths := map[string]any{}
	op := func(path, method string, o map[string]any) {
		p, _ := paths[path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[path] = p
		}
		p[strings.ToLower(method)] = o
	}
	errResp := map[string]any{"description": "an error, with the switch's sentence", "content": jsonContent(ref("Error"))}
	okResp := func(schema map[string]any) map[string]any {
		return map[string]any{"200": map[string]any{"description": "done", "content": jsonContent(schema)}, "default": errResp}
	}
	for _, rt := range routes {
		op(rt.path, rt.method, verbOp(rt, rt.new().Verb(), okResp))
	}
	for name, rt := range verbTable {
		generic := rt
		generic.path = ""
		o := verbOp(generic, "verb_"+name, okResp)
		o["summary"] = "<" + name + ">: " + rt.summary
		op("/api/v1/verbs/"+name, "POST", o)
	}
	op("/api/v1/lab", "GET", map[string]any{"operationId": "lab", "summary": "the running lab, as `cloonix ctrl list --json`",
		"responses": okResp(ref("Lab"))})
	op("/api/v1/openapi.json", "GET", map[string]any{"operationId": "openapi", "summary": "this document",
		"responses": okResp(map[string]any{"type": "object"})})
	op("/api/v1/events", "GET", map[string]any{"operationId": "events", "summary": "the switch's events as server-sent events (data: an Event in JSON)",
		"responses": map[string]any{"200": map[string]any{"description": "an event stream",
			"content": map[string]any{"text/event-stream": map[string]any{"schema": map[string]any{"type": "string"}}}}, "default": errResp}})
	op("/api/v1/vms/{name}/exec", "POST", map[string]any{"operationId": "exec", "summary": "run a command in a guest through its agent",
		"parameters":  []any{pathParamDoc("name")},
		"requestBody": map[string]any{"required": true, "content": jsonContent(ref("ExecRequest"))},
		"responses":   okResp(ref("ExecResult"))})
	exec := jsonSchema(reflect.TypeOf(ExecRequest{}))
	exec["required"] = []string{"cmd"}
	exec["additionalProperties"] = false
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "cloonix API", "version": "1",
			"description": "The switch's verbs as JSON (docs/automation.md). Every request needs Authorization: Bearer TOKEN (work_dir/api.token)."},
		"security": []any{map[string]any{"bearer": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{
				"Error":       objectWith(map[string]any{"error": map[string]any{"type": "string"}}, "error"),
				"OK":          objectWith(map[string]any{"ok": map[string]any{"type": "boolean"}}, "ok"),
				"Lab":         jsonSchema(reflect.TypeOf(proto.Lab{})),
				"Event":       jsonSchema(reflect.TypeOf(proto.Event{})),
				"ExecRequest": exec,
				"ExecResult":  jsonSchema(reflect.TypeOf(ExecResult{})),
			},
		},
	}
}

// verbOp is the operation of one route over a typed verb.
func verbOp(rt route, id string, okResp func(map[string]any) map[string]any) map[string]any {
	skip := map[string]bool{}
	var params []any
	for _, p := range rt.params() {
		skip[p] = true
		params = append(params, pathParamDoc(p))
	}
	o := map[string]any{"operationId": id, "summary": rt.summary,
		"description": "The JSON properties are the attributes of the XML verb <" + rt.new().Verb() + "> (docs/protocol.md)."}
	if len(params) > 0 {
		o["parameters"] = params
	}
	body := objectSchema(fields(rt.reqType()), skip)
	if len(body["properties"].(map[string]any)) > 0 {
		o["requestBody"] = map[string]any{"required": body["required"] != nil, "content": jsonContent(body)}
	}
	if rt.reply != nil {
		o["responses"] = okResp(schemaOf(reflect.TypeOf(rt.reply()).Elem()))
	} else {
		o["responses"] = okResp(ref("OK"))
	}
	return o
}

func pathParamDoc(name string) map[string]any {
	return map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func jsonContent(schema map[string]any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

func objectWith(props map[string]any, required ...string) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": required}
}
