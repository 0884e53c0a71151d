package api

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// The JSON form of a typed verb is read off its XML: each attribute (and
// child element) of the request struct is a JSON property of the same
// name, so the XML protocol, the HTTP API and the OpenAPI document share
// one definition, the structs of package proto.

// field is one JSON property of a request or reply struct.
type field struct {
	name     string
	index    []int
	typ      reflect.Type
	required bool // neither omitempty nor a pointer nor a bool
}

var attrsType = reflect.TypeOf([]xml.Attr(nil))

// fields lists t's properties: xml-tagged fields, embedded structs
// flattened, XMLName left out. Options ([]xml.Attr ",any,attr") are the
// property "options", an object of strings.
func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Name == "XMLName" || !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for _, sub := range fields(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		tag := f.Tag.Get("xml")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Type == attrsType && strings.Contains(opts, "any") {
			name = "options"
		}
		if name == "" || name == "-" {
			continue
		}
		req := !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer && f.Type.Kind() != reflect.Bool && f.Type.Kind() != reflect.Slice
		out = append(out, field{name: name, index: []int{i}, typ: f.Type, required: req})
	}
	return out
}

// decodeInto fills the struct v points to from a JSON object; path
// values (from the URL) win over the body's. An unknown property is an
// error naming the ones there are.
func decodeInto(v any, body []byte, path map[string]string) error {
	rv := reflect.ValueOf(v).Elem()
	fs := fields(rv.Type())
	raw := map[string]json.RawMessage{}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &raw); err != nil {
			return fmt.Errorf("the body is not a JSON object: %v", err)
		}
	}
	known := map[string]field{}
	var names []string
	for _, f := range fs {
		known[f.name] = f
		names = append(names, f.name)
	}
	sort.Strings(names)
	for k := range raw {
		if _, ok := known[k]; !ok {
			return fmt.Errorf("unknown property %q; this request takes %s", k, strings.Join(names, ", "))
		}
	}
	for k, val := range path {
		b, _ := json.Marshal(val)
		raw[k] = b
	}
	for _, f := range fs {
		b, ok := raw[f.name]
		if !ok || string(b) == "null" {
			continue
		}
		dst := rv.FieldByIndex(f.index)
		if f.typ == attrsType {
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("property %q: want an object of strings", f.name)
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var attrs []xml.Attr
			for _, k := range keys {
				if strings.ContainsAny(k, " <>&\"'=/") || k == "" {
					return fmt.Errorf("option %q: not a name", k)
				}
				attrs = append(attrs, xml.Attr{Name: xml.Name{Local: k}, Value: m[k]})
			}
			dst.Set(reflect.ValueOf(attrs))
			continue
		}
		p := reflect.New(f.typ)
		if err := json.Unmarshal(b, p.Interface()); err != nil {
			return fmt.Errorf("property %q: want %s", f.name, jsonKind(f.typ))
		}
		dst.Set(p.Elem())
	}
	return nil
}

// jsonKind names a Go type's JSON kind for messages.
func jsonKind(t reflect.Type) string {
	switch schemaOf(t)["type"] {
	case "integer":
		return "a whole number"
	case "boolean":
		return "true or false"
	case "array":
		return "an array of strings"
	case "object":
		return "an object"
	}
	return "a string"
}

// encode is a reply struct as JSON, by its XML names.
func encode(v reflect.Value) any {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		for _, f := range fields(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if fv.Kind() == reflect.Pointer && fv.IsNil() {
				continue
			}
			m[f.name] = encode(fv)
		}
		return m
	case reflect.Slice:
		if v.Type() == attrsType {
			m := map[string]string{}
			for _, a := range v.Interface().([]xml.Attr) {
				m[a.Name.Local] = a.Value
			}
			return m
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = encode(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// schemaOf is the JSON schema of a Go type by its XML names.
func schemaOf(t reflect.Type) map[string]any {
	if t == attrsType {
		return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32, reflect.Uint16:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem())}
	case reflect.Struct:
		return objectSchema(fields(t), nil)
	}
	return map[string]any{}
}

// objectSchema is the schema of an object with fs, leaving out skip.
func objectSchema(fs []field, skip map[string]bool) map[string]any {
	props := map[string]any{}
	var req []string
	for _, f := range fs {
		if skip[f.name] {
			continue
		}
		props[f.name] = schemaOf(f.typ)
		if f.required {
			req = append(req, f.name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(req) > 0 {
		s["required"] = req
	}
	return s
}

// jsonSchema is the schema of a type by its JSON tags (the lab, events:
// they are JSON already in `ctrl list --json` and `event --json`).
func jsonSchema(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = jsonSchema(f.Type)
		}
		return map[string]any{"type": "object", "properties": props}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": jsonSchema(t.Elem())}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": jsonSchema(t.Elem())}
	}
	return schemaOf(t)
}
