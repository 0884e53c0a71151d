// Package proto holds the XML control protocol (DESIGN section 5): message
// encoding, the state shapes that `list` returns, name rules, the TCP
// challenge/HMAC authentication, and the client library.
//
// Each message is one top-level element. A request's element name is its
// verb, its attributes are its arguments and it carries an id:
//
//	<add_lan id="7" name="lan_one"/>
//
// The reply has the same id and ok="true", or ok="false" with an <error>:
//
//	<reply id="7" ok="true"/>
//	<reply id="8" ok="false"><error>lan "x": no such lan</error></reply>
//
// Events (after <subscribe/>) are <event type="..." .../> elements.
package proto

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// MaxMessage bounds one message; a longer one is refused and the
// connection closed, so a client cannot make the daemon buffer without end.
const MaxMessage = 4 << 20

// Msg is one top-level element as it travels.
type Msg struct {
	Name  string            // element name: the verb, "reply", "event", "challenge"
	Attrs map[string]string // attributes
	Inner []byte            // raw inner XML (payloads such as <lab> or <error>)
}

// Get returns attribute k ("" when absent).
func (m *Msg) Get(k string) string { return m.Attrs[k] }

// ID is the message's id attribute.
func (m *Msg) ID() string { return m.Attrs["id"] }

type rawMsg struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
}

// Encode writes m as one element followed by a newline.
func (m *Msg) Encode(w io.Writer) error {
	_, err := w.Write(m.Bytes())
	return err
}

// Bytes is m encoded, attributes in sorted order (id first) for stable output.
func (m *Msg) Bytes() []byte {
	var b bytes.Buffer
	b.WriteByte('<')
	b.WriteString(m.Name)
	keys := make([]string, 0, len(m.Attrs))
	for k := range m.Attrs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i] == "id" || keys[j] == "id" {
			return keys[i] == "id"
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteString(`="`)
		_ = xml.EscapeText(&b, []byte(m.Attrs[k]))
		b.WriteByte('"')
	}
	if len(m.Inner) == 0 {
		b.WriteString("/>\n")
		return b.Bytes()
	}
	b.WriteByte('>')
	b.Write(m.Inner)
	b.WriteString("</")
	b.WriteString(m.Name)
	b.WriteString(">\n")
	return b.Bytes()
}

// countingReader fails once more than max bytes are read since the last reset.
type countingReader struct {
	r   io.Reader
	n   int
	max int
}

var errTooBig = fmt.Errorf("message longer than %d bytes", MaxMessage)

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		return 0, errTooBig
	}
	if len(p) > c.max-c.n {
		p = p[:c.max-c.n]
	}
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Decoder reads messages one after another from a stream.
type Decoder struct {
	cr  *countingReader
	dec *xml.Decoder
}

// NewDecoder reads messages from r.
func NewDecoder(r io.Reader) *Decoder {
	cr := &countingReader{r: r, max: MaxMessage}
	d := xml.NewDecoder(cr)
	d.Strict = true
	return &Decoder{cr: cr, dec: d}
}

// ErrBadMessage wraps every decoding error but EOF.
var ErrBadMessage = errors.New("bad message")

// Decode returns the next top-level element. io.EOF means a clean end
// between messages; any other error means the stream is unusable.
func (d *Decoder) Decode() (*Msg, error) {
	d.cr.n = 0
	for {
		tok, err := d.dec.Token()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			if isEOF(err) {
				return nil, fmt.Errorf("%w: truncated message (the stream ended inside it)", ErrBadMessage)
			}
			return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var raw rawMsg
			if err := d.dec.DecodeElement(&raw, &t); err != nil {
				if isEOF(err) {
					return nil, fmt.Errorf("%w: truncated <%s>", ErrBadMessage, t.Name.Local)
				}
				return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
			}
			m := &Msg{Name: raw.XMLName.Local, Attrs: make(map[string]string, len(raw.Attrs)), Inner: raw.Inner}
			for _, a := range raw.Attrs {
				if _, dup := m.Attrs[a.Name.Local]; dup {
					return nil, fmt.Errorf("%w: <%s> has attribute %s twice", ErrBadMessage, m.Name, a.Name.Local)
				}
				m.Attrs[a.Name.Local] = a.Value
			}
			return m, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("%w: text %q outside an element", ErrBadMessage, truncate(string(t), 20))
			}
		case xml.ProcInst, xml.Comment:
			// <?xml ...?> and comments between messages are allowed.
		case xml.Directive:
			return nil, fmt.Errorf("%w: directives (<!...>) are not accepted", ErrBadMessage)
		default:
			return nil, fmt.Errorf("%w: unexpected %T", ErrBadMessage, tok)
		}
	}
}

// isEOF tells whether the input ended inside a message.
func isEOF(err error) bool {
	var se *xml.SyntaxError
	return err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &se) && se.Msg == "unexpected EOF"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// NewReply builds the reply to request id: ok, or an error sentence.
func NewReply(id string, err error, payload []byte) *Msg {
	m := &Msg{Name: "reply", Attrs: map[string]string{"id": id, "ok": "true"}, Inner: payload}
	if err != nil {
		m.Attrs["ok"] = "false"
		var b bytes.Buffer
		b.WriteString("<error>")
		_ = xml.EscapeText(&b, []byte(err.Error()))
		b.WriteString("</error>")
		m.Inner = b.Bytes()
	}
	return m
}

// ReplyError extracts the error sentence of a reply, or nil when ok.
func ReplyError(m *Msg) error {
	if m.Get("ok") == "true" {
		return nil
	}
	var e struct {
		Error string `xml:"error"`
	}
	_ = xml.Unmarshal(append(append([]byte("<r>"), m.Inner...), "</r>"...), &e)
	if e.Error == "" {
		e.Error = "request failed (no reason given)"
	}
	return errors.New(strings.TrimSpace(e.Error))
}

// Event is one change reported to subscribers.
type Event struct {
	Type  string            `json:"type"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Msg encodes the event as an <event> element.
func (e Event) Msg() *Msg {
	a := make(map[string]string, len(e.Attrs)+1)
	for k, v := range e.Attrs {
		a[k] = v
	}
	a["type"] = e.Type
	return &Msg{Name: "event", Attrs: a}
}

// EventFromMsg is the inverse of Event.Msg.
func EventFromMsg(m *Msg) Event {
	e := Event{Type: m.Get("type"), Attrs: map[string]string{}}
	for k, v := range m.Attrs {
		if k != "type" {
			e.Attrs[k] = v
		}
	}
	return e
}

// String is the one-line form printed by `cloonix event`.
func (e Event) String() string {
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Type)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, e.Attrs[k])
	}
	return b.String()
}
