package proto

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits shared by the switch, the topology parser and the command line,
// so a file the parser accepts is one the switch takes.
const (
	MinMem         = 32      // MB
	MaxMem         = 1 << 20 // MB; the switch also caps at the host's memory
	DefaultMem     = 256     // MB
	MaxCPU         = 64
	MaxEths        = 32
	MaxBootTimeout = 24 * 3600 // seconds
	MaxExecTimeout = 24 * 3600 // seconds
	MaxPos         = 1000000   // a graph coordinate's bound
	MaxCaptureQ    = 1 << 20
	MinCaptureQ    = 16
	// DefaultSlirp is the slirp tux the switch starts unless no_nat is set.
	DefaultSlirp = "nat"
)

// Request is one verb's typed arguments. The struct's xml tags are the
// wire: attribute names (and, for exec, child elements) of the request
// element, exactly as DESIGN section 5 spells them.
type Request interface {
	Verb() string
	// Validate checks what can be checked without the lab; the switch
	// checks the rest (existence, the host's memory, files).
	Validate() error
}

// EncodeRequest is r's attributes and inner XML, for Client.Send.
func EncodeRequest(r Request) (map[string]string, []byte, error) {
	b, err := xml.Marshal(r)
	if err != nil {
		return nil, nil, fmt.Errorf("<%s>: %v", r.Verb(), err)
	}
	m, err := NewDecoder(bytes.NewReader(b)).Decode()
	if err != nil {
		return nil, nil, fmt.Errorf("<%s>: %v", r.Verb(), err)
	}
	return m.Attrs, m.Inner, nil
}

// DecodeRequest fills r from message m and validates it. The id and
// empty attributes are left out: an empty value means "the default", as
// it always did.
func DecodeRequest(m *Msg, r Request) error {
	c := &Msg{Name: m.Name, Attrs: make(map[string]string, len(m.Attrs)), Inner: m.Inner}
	for k, v := range m.Attrs {
		if k != "id" && v != "" {
			c.Attrs[k] = v
		}
	}
	if err := xml.Unmarshal(c.Bytes(), r); err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			for k, v := range c.Attrs {
				if strings.TrimSpace(v) == ne.Num {
					return fmt.Errorf("<%s> %s=%q: want a whole number", m.Name, k, v)
				}
			}
			return fmt.Errorf("<%s>: %q: want a whole number", m.Name, ne.Num)
		}
		return fmt.Errorf("<%s>: bad arguments: %v", m.Name, err)
	}
	return r.Validate()
}

// listReply marks replies whose payload is a list of elements rather
// than one element.
type listReply interface{ isList() }

// EncodeReply is a reply's payload (nil for none).
func EncodeReply(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if l, ok := v.(*ImpairReply); ok {
		return xml.Marshal(l.Ports)
	}
	return xml.Marshal(v)
}

// DecodeReply reads a reply's payload into v.
func DecodeReply(verb string, inner []byte, v any) error {
	if _, ok := v.(listReply); ok {
		inner = append(append([]byte("<r>"), inner...), "</r>"...)
	}
	if err := xml.Unmarshal(inner, v); err != nil {
		return fmt.Errorf("%s: bad reply from the switch: %v", verb, err)
	}
	return nil
}

// need is the error for a required attribute that is missing.
func need(verb, attr, v string) error {
	if v == "" {
		return fmt.Errorf("<%s> needs attribute %s=\"...\"", verb, attr)
	}
	return nil
}

// needName checks a required name attribute and its spelling.
func needName(verb, attr, kind, v string) error {
	if err := need(verb, attr, v); err != nil {
		return err
	}
	return CheckName(kind, v)
}

// inRange checks an optional integer.
func inRange(verb, attr string, v *int, lo, hi int) error {
	if v != nil && (*v < lo || *v > hi) {
		return fmt.Errorf("<%s> %s=\"%d\": want a whole number from %d to %d", verb, attr, *v, lo, hi)
	}
	return nil
}

// Int is a helper for optional integer fields.
func Int(v int) *int { return &v }

// Empty is the request of verbs without arguments.
type Empty struct{ verb string }

// Verb implements Request.
func (e Empty) Verb() string { return e.verb }

// Validate implements Request.
func (Empty) Validate() error { return nil }

// The verbs without arguments.
var (
	Ping      = Empty{"ping"}
	Stop      = Empty{"stop"}
	List      = Empty{"list"}
	Subscribe = Empty{"subscribe"}
)

// MarshalXML writes no element content; Empty has nothing to say.
func (e Empty) MarshalXML(enc *xml.Encoder, start xml.StartElement) error {
	start.Name.Local = e.verb
	return enc.EncodeElement(struct{}{}, start)
}

// Pong is ping's reply.
type Pong struct {
	XMLName xml.Name `xml:"pong"`
	Pid     int      `xml:"pid,attr"`
	Network string   `xml:"network,attr"`
}
