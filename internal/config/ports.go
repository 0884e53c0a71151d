package config

import (
	"fmt"
	"strconv"
	"strings"
)

// PortSet is a set of TCP/UDP port ranges.
type PortSet [][2]int

// Has tells whether p is in the set.
func (s PortSet) Has(p int) bool {
	for _, r := range s {
		if p >= r[0] && p <= r[1] {
			return true
		}
	}
	return false
}

// ParsePorts reads "22,4713,8000-8999" or "none" (an empty set); "" is a
// nil set (no allow-list).
func ParsePorts(s string) (PortSet, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	set := PortSet{}
	if s == "none" {
		return set, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		lo, hi, isRange := strings.Cut(f, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
			return nil, fmt.Errorf("%q: want ports or ranges 1-65535 separated by commas (e.g. 22,8000-8999), or none", f)
		}
		set = append(set, [2]int{a, b})
	}
	return set, nil
}
