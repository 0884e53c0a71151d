package proto

import "testing"

func TestParsePorts(t *testing.T) {
	for _, c := range []struct {
		in   string
		has  []int
		not  []int
		fail bool
	}{
		{in: "", not: []int{22}},
		{in: "none", not: []int{22, 1}},
		{in: "22, 8000-8999", has: []int{22, 8000, 8999}, not: []int{23, 9000}},
		{in: "0", fail: true}, {in: "70000", fail: true}, {in: "9-1", fail: true}, {in: "x", fail: true}, {in: "1-", fail: true},
	} {
		s, err := ParsePorts(c.in)
		if (err != nil) != c.fail {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		for _, p := range c.has {
			if !s.Has(p) {
				t.Errorf("%q lacks %d", c.in, p)
			}
		}
		for _, p := range c.not {
			if s.Has(p) {
				t.Errorf("%q has %d", c.in, p)
			}
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	f.Add("22,8000-8999")
	f.Add("none")
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParsePorts(s)
		if err != nil {
			return
		}
		for _, r := range set {
			if r[0] < 1 || r[1] > 65535 || r[0] > r[1] {
				t.Fatalf("%q gave range %v", s, r)
			}
		}
	})
}
