package e2e

import (
	"os"
	"path/filepath"
	"sort"
)

// consoleTailLines is how much of each guest's console a failed test
// prints: enough for a kernel panic, an OOM kill or an agent's last words.
const consoleTailLines = 40

// logConsoles prints the tail of every guest's console.log under the
// lab's work_dir (the machine manager writes WORK_DIR/VM/console.log), so
// that a failure caused inside a guest explains itself.
func (l *Lab) logConsoles() {
	l.t.Helper()
	logs, _ := filepath.Glob(filepath.Join(l.Dir, "*", "console.log"))
	sort.Strings(logs)
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		vm := filepath.Base(filepath.Dir(p))
		l.t.Logf("%s console.log (last %d lines):\n%s", vm, consoleTailLines, lastLines(string(b), consoleTailLines))
	}
}
