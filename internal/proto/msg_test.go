package proto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	msgs := []*Msg{
		{Name: "add_lan", Attrs: map[string]string{"id": "1", "name": "lan_one"}},
		{Name: "reply", Attrs: map[string]string{"id": "2", "ok": "true"}, Inner: []byte(`<port name="p" socket="/x/p.sock"/>`)},
		{Name: "event", Attrs: map[string]string{"type": "attached", "port": "A:eth0", "lan": "l<&>\"'"}},
		{Name: "add_tux", Attrs: map[string]string{"id": "3", "kind": "t2t", "peer": "host:1\t2\n3"}},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := m.Encode(&buf); err != nil {
			t.Fatal(err)
		}
	}
	dec := NewDecoder(&buf)
	for i, want := range msgs {
		got, err := dec.Decode()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Name != want.Name || !reflect.DeepEqual(got.Attrs, want.Attrs) || !bytes.Equal(got.Inner, want.Inner) {
			t.Errorf("message %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := dec.Decode(); err != io.EOF {
		t.Errorf("after the last message: %v, want EOF", err)
	}
}

func TestEncodeOrder(t *testing.T) {
	m := &Msg{Name: "attach", Attrs: map[string]string{"lan": "l", "port": "p", "id": "9"}}
	if got := string(m.Bytes()); got != "<attach id=\"9\" lan=\"l\" port=\"p\"/>\n" {
		t.Errorf("encoded %q", got)
	}
}

// TestDecodeBetweenMessages: declarations, comments and white space
// between messages are fine.
func TestDecodeBetweenMessages(t *testing.T) {
	in := "<?xml version=\"1.0\"?>\n<!-- hi -->\n  <ping id=\"1\"/>\r\n\t<list id=\"2\"></list><subscribe id=\"3\"/>"
	dec := NewDecoder(strings.NewReader(in))
	for _, want := range []string{"ping", "list", "subscribe"} {
		m, err := dec.Decode()
		if err != nil || m.Name != want {
			t.Fatalf("got %+v %v, want <%s>", m, err, want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`<a id="1"`, "truncated"},
		{`<a id="1"><b>`, "truncated <a>"},
		{`<a></b>`, "bad message"},
		{`text`, "outside an element"},
		{`<!DOCTYPE lol [<!ENTITY a "aaaa">]><a/>`, "directives"},
		{`<a x="&lol;"/>`, "bad message"},
		{`<a x="1" x="2"/>`, "attribute x twice"},
		{"<a x=\"\x00\"/>", "bad message"},
		{`<a x=1/>`, "bad message"},
		{`</a>`, "bad message"},
		{"<a>" + strings.Repeat("<b>", 10) + strings.Repeat("</b>", 10) + "</a><", "bad message"},
	} {
		dec := NewDecoder(strings.NewReader(c.in))
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			_, err = dec.Decode()
		}
		if err == nil || err == io.EOF || !errors.Is(err, ErrBadMessage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want a bad message error with %q", c.in, err, c.want)
		}
	}
}

func TestDecodeTooLong(t *testing.T) {
	r := io.MultiReader(strings.NewReader(`<a x="`), strings.NewReader(strings.Repeat("y", MaxMessage)), strings.NewReader(`"/>`))
	_, err := NewDecoder(r).Decode()
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("oversize message: %v", err)
	}
	// Many small messages in a row are not a long one.
	var b bytes.Buffer
	for b.Len() < 2*MaxMessage {
		b.WriteString(`<ping id="1"/>`)
	}
	dec := NewDecoder(&b)
	for {
		if _, err := dec.Decode(); err != nil {
			if err != io.EOF {
				t.Fatalf("stream of small messages: %v", err)
			}
			break
		}
	}
}

func TestReplies(t *testing.T) {
	ok := NewReply("5", nil, []byte("<x/>"))
	if ReplyError(ok) != nil || ok.ID() != "5" || string(ok.Inner) != "<x/>" {
		t.Errorf("ok reply %+v", ok)
	}
	bad := NewReply("6", errors.New(`lan "a<b" & co: no such lan`), nil)
	var buf bytes.Buffer
	_ = bad.Encode(&buf)
	m, err := NewDecoder(&buf).Decode()
	if err != nil {
		t.Fatal(err)
	}
	if e := ReplyError(m); e == nil || e.Error() != `lan "a<b" & co: no such lan` {
		t.Errorf("error reply: %v", e)
	}
	if e := ReplyError(&Msg{Name: "reply", Attrs: map[string]string{"ok": "false"}}); e == nil {
		t.Error("a failed reply without a sentence is not an error")
	}
}

func TestEvents(t *testing.T) {
	e := Event{Type: "attached", Attrs: map[string]string{"port": "p", "lan": "l"}}
	m := e.Msg()
	if m.Name != "event" || m.Get("type") != "attached" {
		t.Errorf("msg %+v", m)
	}
	if back := EventFromMsg(m); !reflect.DeepEqual(back, e) {
		t.Errorf("round trip %+v", back)
	}
	if e.String() != "attached lan=l port=p" {
		t.Errorf("string %q", e.String())
	}
}

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"lan_one", true}, {"A", true}, {"vm-1.eth0", true}, {strings.Repeat("a", 64), true},
		{"", false}, {".", false}, {"..", false}, {"a..b", false}, {"a/b", false}, {"/", false},
		{"a b", false}, {"a\tb", false}, {"a\nb", false}, {"a\x00b", false}, {"a\x7fb", false},
		{strings.Repeat("a", 65), false}, {"é", false}, {"a:b", false}, {"$(x)", false}, {"-", true},
	} {
		err := CheckName("lan", c.name)
		if (err == nil) != c.ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", c.name, err, c.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "lan name") {
			t.Errorf("CheckName(%q) error %q does not name the thing", c.name, err)
		}
	}
}

func TestAuth(t *testing.T) {
	n := NewNonce()
	if len(n) != 64 || n == NewNonce() {
		t.Fatalf("nonce %q", n)
	}
	mac := AuthMAC("pw", n)
	if !CheckMAC("pw", n, mac) {
		t.Error("right password refused")
	}
	for _, bad := range []string{AuthMAC("pW", n), AuthMAC("pw", NewNonce()), "", "zz", mac[:62], mac + "00"} {
		if CheckMAC("pw", n, bad) {
			t.Errorf("wrong answer %q accepted", bad)
		}
	}
	if strings.Contains(mac, "pw") {
		t.Error("password visible in the answer")
	}
}

// FuzzDecode: the decoder never panics, and what it accepts survives
// encoding and decoding again unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`<add_lan id="1" name="x"/>`, `<reply id="1" ok="false"><error>e &amp; f</error></reply>`,
		`<?xml version="1.0"?><!--c--><a/><b x="1"></b>`, `<a x="&lt;&#65;"/>`, `<a><b>`, `text`, `<!DOCTYPE a>`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		dec := NewDecoder(bytes.NewReader(in))
		for i := 0; i < 8; i++ {
			m, err := dec.Decode()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrBadMessage) {
					t.Fatalf("error %v is not ErrBadMessage", err)
				}
				return
			}
			again, err := NewDecoder(bytes.NewReader(m.Bytes())).Decode()
			if err != nil {
				t.Fatalf("re-encoded %q does not decode: %v", m.Bytes(), err)
			}
			if again.Name != m.Name || !reflect.DeepEqual(again.Attrs, m.Attrs) {
				t.Fatalf("round trip changed %+v into %+v", m, again)
			}
		}
	})
}
