package daemon

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"

	"cloonix/internal/proto"
)

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// need returns a required, non-empty attribute.
func need(m *proto.Msg, k string) (string, error) {
	v, ok := m.Attrs[k]
	if !ok || v == "" {
		return "", fmt.Errorf("<%s> needs attribute %s=\"...\"", m.Name, k)
	}
	return v, nil
}

// intArg parses an optional integer attribute within [lo,hi].
func intArg(m *proto.Msg, k string, def, lo, hi int) (int, error) {
	v, ok := m.Attrs[k]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("<%s> %s=%q: want a whole number from %d to %d", m.Name, k, v, lo, hi)
	}
	return n, nil
}
