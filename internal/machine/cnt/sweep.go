package cnt

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"cloonix/internal/machine"
)

// Sweep removes what nodes killed with their switch left in h.WorkDir:
// the runtime's records of them (runc delete also removes their cgroups)
// and their root filesystems' overlay mounts.
func (Kind) Sweep(h machine.Host) {
	root := filepath.Join(h.WorkDir, ".runc")
	if ents, err := os.ReadDir(root); err == nil && len(ents) > 0 {
		if path, err := FindRuntime(h.OCIRuntime); err == nil {
			r := Runtime{Path: path, Root: root}
			for _, e := range ents {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_ = r.run(ctx, "delete", "--force", e.Name())
				cancel()
			}
		}
	}
	for _, m := range mountsUnder(h.WorkDir) {
		unmount(m)
	}
}

// mountsUnder lists the mount points below dir, deepest first (from
// /proc/self/mountinfo: its fifth field, octal escapes as the kernel
// writes them).
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	if dir = filepath.Clean(dir); dir != "/" {
		dir += "/"
	}
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 {
			continue
		}
		p := unescapeMount(fs[4])
		if strings.HasPrefix(p, dir) {
			ms = append(ms, p)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

// unescapeMount undoes mountinfo's \ooo escapes (space, tab, newline, \).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
