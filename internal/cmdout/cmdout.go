// Package cmdout shapes what a host command printed for an error message:
// its last lines say why it failed (image builds in bulk, the container
// runtime and tools in machine/cnt).
package cmdout

import "strings"

// Tail is the last n lines of b, without the final newline.
func Tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
