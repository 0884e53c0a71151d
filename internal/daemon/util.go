package daemon

import (
	"fmt"

	"cloonix/internal/proto"
)

// need returns a required, non-empty attribute.
func need(m *proto.Msg, k string) (string, error) {
	v, ok := m.Attrs[k]
	if !ok || v == "" {
		return "", fmt.Errorf("<%s> needs attribute %s=\"...\"", m.Name, k)
	}
	return v, nil
}
