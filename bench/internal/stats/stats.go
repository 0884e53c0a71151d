// Package stats holds what every benchmark prints: medians and ranges of
// rounds, ratios against the peer measured in the same run, and the
// machine and its load at the time (figures mean nothing without them).
package stats

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Series is one path's results over the rounds.
type Series []float64

// Add appends a round's value.
func (s *Series) Add(v float64) { *s = append(*s, v) }

func (s Series) sorted() []float64 {
	v := append([]float64(nil), s...)
	sort.Float64s(v)
	return v
}

// Median of the rounds (the upper middle one for an even count); 0 when
// empty.
func (s Series) Median() float64 {
	if len(s) == 0 {
		return 0
	}
	return s.sorted()[len(s)/2]
}

// Range is "min-max" with prec decimals ("-" when empty).
func (s Series) Range(prec int) string {
	if len(s) == 0 {
		return "-"
	}
	v := s.sorted()
	return fmt.Sprintf("%.*f-%.*f", prec, v[0], prec, v[len(v)-1])
}

// Ratio is a/b as "N.NNx", or "-" when b is zero.
func Ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Host describes the machine and its load now: CPUs, memory, load
// average and the UTC time.
func Host() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GB", (kb+512*1024)/(1024*1024))
		}
	}
	return fmt.Sprintf("%s, %d CPUs%s, load average %s, %s", runtime.Version(), runtime.NumCPU(), mem, Load(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// Load is the 1, 5 and 15 minute load averages.
func Load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
