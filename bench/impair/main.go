// Command impair measures what impairments and captures cost: the
// forwarding rate A->B through one lan of three stream ports, plain,
// with port C (a bystander) impaired by delay=1ms rate=100mbit, with the
// path itself impaired (A->C through that impairment; A's ingress
// delayed by 1 ms), and with a capture of the lan running. Run it with
// `go run ./bench/impair`; docs/benchmarks.md records results.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"cloonix/bench/internal/frames"
	"cloonix/bench/internal/stats"
	"cloonix/internal/fabric"
	"cloonix/internal/netem"
	"cloonix/internal/wire"
)

var (
	dur     = flag.Duration("d", time.Second, "measuring time per round and case")
	rounds  = flag.Int("rounds", 3, "rounds, the cases taking turns; the median and range are shown (the machine may be shared)")
	short   = flag.Bool("short", false, "smoke run: one round of 200 ms, 1500-byte frames")
	only    = flag.Int("case", -1, "run only this case (0-based)")
	sizes   = flag.String("sizes", "64,1500", "frame sizes")
	profile = flag.String("cpuprofile", "", "write a CPU profile to this file")
)

var macs = map[string][]byte{
	"A": {0x52, 0x54, 0, 0xbe, 0, 0xa},
	"B": {0x52, 0x54, 0, 0xbe, 0, 0xb},
	"C": {0x52, 0x54, 0, 0xbe, 0, 0xc},
}

type lab struct {
	fab   *fabric.Fabric
	conns map[string]*wire.StreamConn
	dir   string
}

func newLab() *lab {
	dir, err := os.MkdirTemp("", "cloonix-bench-impair")
	if err != nil {
		panic(err)
	}
	l := &lab{fab: fabric.New(), conns: map[string]*wire.StreamConn{}, dir: dir}
	for _, n := range []string{"A", "B", "C"} {
		c, err := frames.Port(l.fab, dir, n, "lan")
		if err != nil {
			panic(err)
		}
		l.conns[n] = c
	}
	// Every port speaks once so the lan knows where each MAC lives.
	for n, c := range l.conns {
		_ = c.WriteFrame(frames.Frame(frames.Broadcast, macs[n], 60))
		_ = c.Flush()
	}
	time.Sleep(50 * time.Millisecond)
	// Each port got the other two's broadcast.
	for _, c := range l.conns {
		for i := 0; i < 2; i++ {
			f, err := c.ReadFrame()
			if err != nil {
				panic(err)
			}
			f.Release()
		}
	}
	return l
}

func (l *lab) close() {
	for _, c := range l.conns {
		c.Close()
	}
	l.fab.Close()
	os.RemoveAll(l.dir)
}

func (l *lab) impair(port, spec string) {
	p, err := netem.Parse(spec)
	if err != nil {
		panic(err)
	}
	if err := l.fab.SetImpair(port, p); err != nil {
		panic(err)
	}
}

type result struct {
	frames uint64
	secs   float64
}

func (r result) fps() float64 { return float64(r.frames) / r.secs }

// blast sends from src to dst as fast as it can for d; the rate is what
// arrived at dst over the time it took (after a warm-up of 100 ms, so a
// shaper's queue is full and its rate is what shows).
func blast(l *lab, src, dst string, size int, d time.Duration) result {
	tx, rx := l.conns[src], l.conns[dst]
	ring := make([][]byte, 1024)
	for i := range ring {
		ring[i] = frames.Frame(macs[dst], macs[src], size)
	}
	var stop atomic.Bool
	go frames.Flood(tx, ring, 64, &stop)
	var got uint64
	var first, last time.Time
	start := time.Now()
	for {
		fr, err := rx.ReadFrame()
		if err != nil {
			break
		}
		fr.Release()
		now := time.Now()
		if now.Sub(start) < 100*time.Millisecond {
			continue
		}
		if got == 0 {
			first = now
		}
		got++
		last = now
		if last.Sub(first) > d {
			break
		}
	}
	stop.Store(true) // the lab is thrown away after each case
	if got < 2 {
		return result{}
	}
	return result{frames: got - 1, secs: last.Sub(first).Seconds()}
}

// rtt is the median round trip of n lone frames src->dst->src.
func rtt(l *lab, src, dst string, n int) time.Duration {
	tx, rx := l.conns[src], l.conns[dst]
	var d []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		_ = tx.WriteFrame(frames.Frame(macs[dst], macs[src], 100))
		_ = tx.Flush()
		f, err := rx.ReadFrame()
		if err != nil {
			panic(err)
		}
		f.Release()
		_ = rx.WriteFrame(frames.Frame(macs[src], macs[dst], 100))
		_ = rx.Flush()
		if f, err = tx.ReadFrame(); err != nil {
			panic(err)
		}
		f.Release()
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[n/2]
}

type benchCase struct {
	name     string
	src, dst string
	setup    func(l *lab) func()
}

// header applies -short and prints what runs, where and under what load.
func header() {
	if *short {
		*rounds, *dur, *sizes = 1, 200*time.Millisecond, "1500"
	}
	fmt.Printf("cloonix impairment benchmark: GOMAXPROCS %d, median of %d rounds of %v per case\nhost: %s\n\n", runtime.GOMAXPROCS(0), *rounds, *dur, stats.Host())
}

// frameSizes is -sizes as numbers.
func frameSizes() []int {
	var sz []int
	for _, x := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(x)
		if err != nil || n < 60 || n > 9000 {
			panic("bad -sizes " + *sizes)
		}
		sz = append(sz, n)
	}
	return sz
}

func main() {
	flag.Parse()
	const shaping = "delay=1ms rate=100mbit"
	cases := []benchCase{
		{"plain lan, A->B", "A", "B", nil},
		{"C impaired (" + shaping + "), A->B", "A", "B", func(l *lab) func() { l.impair("C", shaping); return nil }},
		{"through C's impairment, A->C", "A", "C", func(l *lab) func() { l.impair("C", shaping); return nil }},
		{"B out delay=1ms limit=100000, A->B", "A", "B", func(l *lab) func() { l.impair("B", "out delay=1ms limit=100000"); return nil }},
		{"A in delay=1ms limit=100000, A->B", "A", "B", func(l *lab) func() { l.impair("A", "in delay=1ms limit=100000"); return nil }},
		{"lan capture running, A->B", "A", "B", func(l *lab) func() {
			t, err := l.fab.CaptureLan("lan", 0)
			if err != nil {
				panic(err)
			}
			go func() {
				var buf []fabric.Captured
				for {
					select {
					case <-t.Ready():
						buf = t.Take(buf)
						for _, c := range buf {
							c.Release()
						}
					case <-t.Done():
						return
					}
				}
			}()
			return t.Close
		}},
	}
	header()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "frame\tcase\tframes/s (median)\tmin-max (k/s)\tMbit/s\tvs plain\t")
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for _, size := range frameSizes() {
		fps := make([]stats.Series, len(cases))
		for r := 0; r < *rounds; r++ {
			// Alternate the cases so load from elsewhere hits all alike.
			for i, c := range cases {
				if *only >= 0 && i != *only {
					continue
				}
				l := newLab()
				var undo func()
				if c.setup != nil {
					undo = c.setup(l)
				}
				res := blast(l, c.src, c.dst, size, *dur)
				if os.Getenv("IMPAIR_DEBUG") != "" {
					_, st, _ := l.fab.Impairment(c.dst)
					fmt.Fprintf(os.Stderr, "case %d: A %+v B %+v C %+v impair A %+v\n", i, l.fab.Port("A").Counters(), l.fab.Port("B").Counters(), l.fab.Port("C").Counters(), st)
				}
				if undo != nil {
					undo()
				}
				l.close()
				if res.secs > 0 {
					fps[i].Add(res.fps())
				}
			}
		}
		for i, c := range cases {
			if len(fps[i]) == 0 {
				continue
			}
			m := fps[i].Median()
			k := make(stats.Series, len(fps[i]))
			for j, v := range fps[i] {
				k[j] = v / 1e3
			}
			fmt.Fprintf(w, "%d\t%s\t%.0f\t%s\t%.1f\t%s\t\n", size, c.name, m, k.Range(0),
				m*float64(size)*8/1e6, stats.Ratio(m, fps[0].Median()))
		}
	}
	w.Flush()
	l := newLab()
	plain := rtt(l, "A", "B", 50)
	l.impair("C", shaping)
	by := rtt(l, "A", "B", 50)
	through := rtt(l, "A", "C", 50)
	l.close()
	fmt.Printf("\nround trip of a lone 100-byte frame (median of 50): plain A-B %v, A-B with C impaired %v, A-C through C's %s %v\n",
		plain.Round(time.Microsecond), by.Round(time.Microsecond), shaping, through.Round(time.Microsecond))
}
