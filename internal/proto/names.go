package proto

import (
	"fmt"
	"strings"
)

// MaxName is the longest name accepted for a VM, lan, port or tux.
const MaxName = 64

// CheckName validates a name before it reaches a path, a socket or a
// command line: 1..64 bytes of letters, digits, '_', '-', '.', not "." or
// "..", no '/', spaces or control characters.
func CheckName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > MaxName {
		return fmt.Errorf("%s name %q is %d bytes; the limit is %d", kind, name[:20]+"...", len(name), MaxName)
	}
	if name == "." || name == ".." || strings.Contains(name, "..") {
		return fmt.Errorf("%s name %q may not contain \"..\"", kind, name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
		if !ok {
			return fmt.Errorf("%s name %q has %q; use letters, digits, '_', '-' and '.'", kind, name, r)
		}
	}
	return nil
}
