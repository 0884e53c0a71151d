package netem

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Pair
		text string // canonical form
	}{
		{"", Pair{}, ""},
		{"delay=50ms", Pair{In: Spec{Delay: 50 * time.Millisecond}, Out: Spec{Delay: 50 * time.Millisecond}}, "delay=50ms"},
		{"delay=50ms jitter=5ms loss=1% rate=10mbit dup=0.1% corrupt=0.1%",
			Pair{In: Spec{Delay: 50e6, Jitter: 5e6, Loss: 1, Rate: 10e6, Dup: 0.1, Corrupt: 0.1}, Out: Spec{Delay: 50e6, Jitter: 5e6, Loss: 1, Rate: 10e6, Dup: 0.1, Corrupt: 0.1}},
			"delay=50ms jitter=5ms loss=1% rate=10mbit dup=0.1% corrupt=0.1%"},
		{"RATE=1.5Mbit", Pair{In: Spec{Rate: 1_500_000}, Out: Spec{Rate: 1_500_000}}, "rate=1500kbit"},
		{"down", Pair{In: Spec{Down: true}, Out: Spec{Down: true}}, "down"},
		{"in loss=5%", Pair{In: Spec{Loss: 5}}, "in loss=5%"},
		{"out rate=1mbit", Pair{Out: Spec{Rate: 1e6}}, "out rate=1mbit"},
		{"in loss=5% out rate=1mbit", Pair{In: Spec{Loss: 5}, Out: Spec{Rate: 1e6}}, "in loss=5% out rate=1mbit"},
		{"delay=1ms in loss=5%", Pair{In: Spec{Delay: 1e6, Loss: 5}, Out: Spec{Delay: 1e6}}, "in delay=1ms loss=5% out delay=1ms"},
		{"seed=42 loss=20% limit=50", Pair{In: Spec{Loss: 20, Seed: 42, HasSeed: true, Limit: 50}, Out: Spec{Loss: 20, Seed: 42, HasSeed: true, Limit: 50}}, "loss=20% limit=50 seed=42"},
		{"delay=200us", Pair{In: Spec{Delay: 200 * time.Microsecond}, Out: Spec{Delay: 200 * time.Microsecond}}, "delay=200µs"},
		{"delay=0 loss=0%", Pair{}, ""},
		{"loss=100%", Pair{In: Spec{Loss: 100}, Out: Spec{Loss: 100}}, "loss=100%"},
		{"rate=100gbit", Pair{In: Spec{Rate: 100e9}, Out: Spec{Rate: 100e9}}, "rate=100gbit"},
		{"rate=1kbit", Pair{In: Spec{Rate: 1000}, Out: Spec{Rate: 1000}}, "rate=1kbit"},
	} {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if s := got.String(); s != c.text {
			t.Errorf("Parse(%q).String() = %q, want %q", c.in, s, c.text)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"delay=50", "give a unit"},
		{"delay=50parsecs", "want a duration"},
		{"delay=-5ms", "negative"},
		{"delay=2h", "not a link delay"},
		{"jitter=-1ms", "negative"},
		{"loss=101%", "from 0% to 100%"},
		{"loss=-1%", "from 0% to 100%"},
		{"loss=0.5", "percentage"},
		{"loss=NaN%", "percentage"},
		{"loss=abc%", "percentage"},
		{"dup=200%", "from 0% to 100%"},
		{"rate=0mbit", "above 0"},
		{"rate=-1mbit", "above 0"},
		{"rate=10", "give a unit"},
		{"rate=10mbps", "in bits"},
		{"rate=500bit", "from 1kbit"},
		{"rate=1tbit", "want a rate"},
		{"rate=101gbit", "to 100gbit"},
		{"rate=1e3kbit", "want a rate"},
		{"limit=0", "number of frames"},
		{"limit=x", "number of frames"},
		{"seed=-1", "whole number"},
		{"loss", "needs a value"},
		{"loss=", "needs a value"},
		{"down=1", "no value"},
		{"bogus=1", "unknown impairment"},
		{"clear", "unknown impairment"},
		{"delay=1ms delay=2ms", "twice"},
		{"in loss=1% in loss=2%", "twice"},
		{"delay=1ms in delay=2ms", "twice"},
	} {
		_, err := Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) error = %v, want it to mention %q", c.in, err, c.want)
		}
	}
}

func TestSpecPredicates(t *testing.T) {
	if !(Spec{Seed: 1, HasSeed: true, Limit: 5}).Zero() {
		t.Error("a seed and a limit alone impair nothing")
	}
	if (Spec{Loss: 1}).Queued() || !(Spec{Rate: 1000}).Queued() || !(Spec{Jitter: 1}).Queued() {
		t.Error("Queued: only delay, jitter and rate hold frames")
	}
	if (Spec{}).QueueLimit() != DefaultLimit || (Spec{Limit: 7}).QueueLimit() != 7 {
		t.Error("QueueLimit")
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// prints to a text that parses back to the same thing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"delay=50ms jitter=5ms loss=1% rate=10mbit dup=0.1% corrupt=0.1%", "down",
		"in loss=5% out rate=1mbit", "seed=1 limit=3", "rate=1.5gbit", "delay=1m", "loss=1e-5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		for _, sp := range []Spec{p.In, p.Out} {
			if sp.Loss < 0 || sp.Loss > 100 || sp.Delay < 0 || sp.Delay > MaxDelay || sp.Jitter < 0 ||
				(sp.Rate != 0 && (sp.Rate < MinRate || sp.Rate > MaxRate)) || sp.Limit < 0 || sp.Limit > MaxLimit {
				t.Fatalf("Parse(%q) accepted out-of-range %+v", s, sp)
			}
		}
		text := p.String()
		q, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) = %q which does not parse: %v", s, text, err)
		}
		if q != p {
			t.Fatalf("round trip of %q through %q: %+v != %+v", s, text, q, p)
		}
	})
}
