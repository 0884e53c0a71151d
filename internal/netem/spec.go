// Package netem holds link impairment settings (delay, jitter, loss,
// rate, duplication, corruption, down) as users write them on the command
// line and in topology files, with their checks and canonical form. The
// fabric applies them; this package only parses and prints.
//
// A Spec is one direction's settings, written as space-separated words:
//
//	delay=50ms jitter=5ms loss=1% rate=10mbit dup=0.1% corrupt=0.1% limit=1000 seed=7 down
//
// A Pair is both directions of a port. Its text is a Spec for both, or
// sections after the words `in` (frames the port's peer sends into the
// switch) and `out` (frames the switch sends to the peer):
//
//	delay=20ms                    both directions
//	in loss=5% out rate=1mbit     different settings per direction
package netem

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Spec is one direction's impairments; the zero value impairs nothing.
type Spec struct {
	Delay  time.Duration // added to every frame
	Jitter time.Duration // uniform in [-Jitter, +Jitter] around Delay, never below 0
	// Loss, Dup and Corrupt are percentages (0..100).
	Loss, Dup, Corrupt float64
	Rate               uint64 // bits per second; 0 means no limit
	Limit              int    // frames held at most (delay and rate queue); 0 means DefaultLimit
	Down               bool   // drop everything
	Seed               uint64 // random source seed, when HasSeed
	HasSeed            bool
}

// Bounds of the settings; beyond them a value is a mistake, not a lab.
const (
	MaxDelay     = 60 * time.Second
	MinRate      = 1_000           // 1 kbit/s
	MaxRate      = 100_000_000_000 // 100 gbit/s
	DefaultLimit = 1000            // as Linux netem
	MaxLimit     = 1_000_000
)

// Zero tells whether s impairs nothing (a seed alone changes nothing).
func (s Spec) Zero() bool {
	return s.Delay == 0 && s.Jitter == 0 && s.Loss == 0 && s.Dup == 0 && s.Corrupt == 0 && s.Rate == 0 && !s.Down
}

// Queued tells whether frames must wait (delay, jitter or rate), so they
// need a queue and a clock rather than a decision on the spot.
func (s Spec) Queued() bool { return s.Delay > 0 || s.Jitter > 0 || s.Rate > 0 }

// QueueLimit is Limit or its default.
func (s Spec) QueueLimit() int {
	if s.Limit > 0 {
		return s.Limit
	}
	return DefaultLimit
}

// Keys is the list of settings, for help and error messages.
const Keys = "delay=DURATION jitter=DURATION loss=P% rate=Nbit|kbit|mbit|gbit dup=P% corrupt=P% limit=FRAMES seed=N down"

// ParseSpec reads one direction's words. Every word is checked; a word
// given twice, an unknown word or a value out of range is an error.
func ParseSpec(words []string) (Spec, error) {
	var s Spec
	seen := map[string]bool{}
	for _, w := range words {
		k, v, hasV := strings.Cut(w, "=")
		k = strings.ToLower(k)
		if seen[k] {
			return Spec{}, fmt.Errorf("impairment %q is given twice", k)
		}
		seen[k] = true
		if k == "down" {
			if hasV {
				return Spec{}, fmt.Errorf("%q: down takes no value", w)
			}
			s.Down = true
			continue
		}
		if !hasV || v == "" {
			if _, known := setters[k]; known {
				return Spec{}, fmt.Errorf("%q needs a value, e.g. %s", w, example[k])
			}
			return Spec{}, fmt.Errorf("unknown impairment %q; known: %s", w, Keys)
		}
		set, ok := setters[k]
		if !ok {
			return Spec{}, fmt.Errorf("unknown impairment %q; known: %s", k, Keys)
		}
		if err := set(&s, v); err != nil {
			return Spec{}, fmt.Errorf("%s=%s: %v", k, v, err)
		}
	}
	return s, nil
}

var example = map[string]string{
	"delay": "delay=50ms", "jitter": "jitter=5ms", "loss": "loss=1%", "rate": "rate=10mbit",
	"dup": "dup=0.1%", "corrupt": "corrupt=0.1%", "limit": "limit=1000", "seed": "seed=42",
}

var setters = map[string]func(s *Spec, v string) error{
	"delay":   func(s *Spec, v string) (err error) { s.Delay, err = parseDuration(v); return },
	"jitter":  func(s *Spec, v string) (err error) { s.Jitter, err = parseDuration(v); return },
	"loss":    func(s *Spec, v string) (err error) { s.Loss, err = parsePercent(v); return },
	"dup":     func(s *Spec, v string) (err error) { s.Dup, err = parsePercent(v); return },
	"corrupt": func(s *Spec, v string) (err error) { s.Corrupt, err = parsePercent(v); return },
	"rate":    func(s *Spec, v string) (err error) { s.Rate, err = ParseRate(v); return },
	"limit": func(s *Spec, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return fmt.Errorf("want a number of frames from 1 to %d", MaxLimit)
		}
		s.Limit = n
		return nil
	},
	"seed": func(s *Spec, v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("want a whole number from 0 to 18446744073709551615")
		}
		s.Seed, s.HasSeed = n, true
		return nil
	},
}

func parseDuration(v string) (time.Duration, error) {
	if strings.HasPrefix(v, "-") {
		return 0, errors.New("a delay cannot be negative")
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil && v != "0" {
		return 0, fmt.Errorf("give a unit, e.g. %sms (units: us, ms, s)", v)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("want a duration such as 50ms, 1.5ms, 200us or 2s")
	}
	if d > MaxDelay {
		return 0, fmt.Errorf("more than %v is not a link delay", MaxDelay)
	}
	return d, nil
}

func parsePercent(v string) (float64, error) {
	num, ok := strings.CutSuffix(v, "%")
	if !ok {
		return 0, fmt.Errorf("write it as a percentage, e.g. %s%%", v)
	}
	p, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
		return 0, errors.New("want a percentage such as 1% or 0.5%")
	}
	if p < 0 || p > 100 {
		return 0, errors.New("a percentage must be from 0% to 100%")
	}
	return p, nil
}

var rateUnits = []struct {
	name string
	mul  float64
}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}

// ParseRate reads a rate such as 10mbit, 1.5gbit or 64kbit into bits/s.
func ParseRate(v string) (uint64, error) {
	lv := strings.ToLower(v)
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(lv, u.name)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(num, "eExXpP_") {
			return 0, errors.New("want a rate such as 10mbit, 1.5gbit or 64kbit")
		}
		if f <= 0 {
			return 0, errors.New("a rate must be above 0 (remove rate= for no limit)")
		}
		bits := math.Round(f * u.mul)
		if bits < MinRate || bits > MaxRate {
			return 0, errors.New("a rate must be from 1kbit to 100gbit")
		}
		return uint64(bits), nil
	}
	if strings.HasSuffix(lv, "bps") {
		return 0, errors.New("give the rate in bits: bit, kbit, mbit or gbit (e.g. 10mbit)")
	}
	return 0, errors.New("give a unit: bit, kbit, mbit or gbit (e.g. 10mbit)")
}

// FormatRate is the shortest exact form of a rate.
func FormatRate(bits uint64) string {
	for _, u := range rateUnits {
		m := uint64(u.mul)
		if bits >= m && bits%m == 0 {
			return strconv.FormatUint(bits/m, 10) + u.name
		}
	}
	return strconv.FormatUint(bits, 10) + "bit"
}

func pct(p float64) string { return strconv.FormatFloat(p, 'g', -1, 64) + "%" }

// Words is the canonical form of s, one word per setting, in a fixed order.
func (s Spec) Words() []string {
	var w []string
	if s.Delay > 0 {
		w = append(w, "delay="+s.Delay.String())
	}
	if s.Jitter > 0 {
		w = append(w, "jitter="+s.Jitter.String())
	}
	if s.Loss > 0 {
		w = append(w, "loss="+pct(s.Loss))
	}
	if s.Rate > 0 {
		w = append(w, "rate="+FormatRate(s.Rate))
	}
	if s.Dup > 0 {
		w = append(w, "dup="+pct(s.Dup))
	}
	if s.Corrupt > 0 {
		w = append(w, "corrupt="+pct(s.Corrupt))
	}
	if s.Limit > 0 {
		w = append(w, "limit="+strconv.Itoa(s.Limit))
	}
	if s.Down {
		w = append(w, "down")
	}
	if s.HasSeed {
		w = append(w, "seed="+strconv.FormatUint(s.Seed, 10))
	}
	return w
}

// String is the canonical text of s ("" for none).
func (s Spec) String() string { return strings.Join(s.Words(), " ") }

// Pair is a port's impairments: In for frames its peer sends into the
// switch, Out for frames the switch sends to its peer.
type Pair struct{ In, Out Spec }

// Zero tells whether neither direction is impaired.
func (p Pair) Zero() bool { return p.In.Zero() && p.Out.Zero() }

// String is the canonical text: one spec when both directions agree,
// else `in ... out ...` sections (an empty one left out).
func (p Pair) String() string {
	in, out := p.In.String(), p.Out.String()
	switch {
	case in == out:
		return in
	case in == "":
		return "out " + out
	case out == "":
		return "in " + in
	}
	return "in " + in + " out " + out
}

// Parse reads a Pair from its text (see the package comment). Words before
// any `in`/`out` apply to both directions; a section may not repeat.
func Parse(text string) (Pair, error) {
	var both, in, out []string
	cur := &both
	seen := map[string]bool{}
	for _, w := range strings.Fields(text) {
		switch lw := strings.ToLower(w); lw {
		case "in", "out":
			if seen[lw] {
				return Pair{}, fmt.Errorf("section %q is given twice", lw)
			}
			seen[lw] = true
			if lw == "in" {
				cur = &in
			} else {
				cur = &out
			}
			continue
		}
		*cur = append(*cur, w)
	}
	if _, err := ParseSpec(both); err != nil {
		return Pair{}, err
	}
	i, err := ParseSpec(append(append([]string{}, both...), in...))
	if err != nil {
		return Pair{}, fmt.Errorf("in: %v", err)
	}
	o, err := ParseSpec(append(append([]string{}, both...), out...))
	if err != nil {
		return Pair{}, fmt.Errorf("out: %v", err)
	}
	return Pair{In: i, Out: o}, nil
}
