// Command fabric measures the switch's forwarding rate: frames per second
// and Gbit/s through one lan between two stream ports (QEMU -netdev
// stream framing over unix sockets), beside the same traffic over a
// direct unix socket pair with the same framing, which is the limit for
// this transport. Run it with `go run ./bench/fabric` (or `make bench`).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"cloonix/bench/internal/frames"
	"cloonix/bench/internal/stats"
	"cloonix/internal/fabric"
	"cloonix/internal/wire"
)

var (
	dur     = flag.Duration("d", time.Second, "measuring time per round and case")
	rounds  = flag.Int("rounds", 5, "rounds; the cases take turns, the table shows medians and ranges")
	short   = flag.Bool("short", false, "smoke run: one round of 200 ms")
	profile = flag.String("cpuprofile", "", "write a CPU profile of the switched cases to this file")
	only    = flag.Int("size", 0, "measure only this frame size")
)

type result struct {
	frames, sent uint64
	secs         float64
	cpu          float64 // process CPU seconds (user+system) during the run
}

// cpuNS is the CPU time spent per frame delivered, in nanoseconds: what a
// frame costs whatever else the machine is doing.
func (r result) cpuNS() float64 { return r.cpu / float64(r.frames) * 1e9 }

func cpuTime() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (r result) fps() float64 { return float64(r.frames) / r.secs }

var (
	macA = []byte{0x52, 0x54, 0, 0xbe, 0, 0xa}
	macB = []byte{0x52, 0x54, 0, 0xbe, 0, 0xb}
)

// run sends frames of size on tx as fast as it can for d while rx counts
// what arrives; the rate is what arrived over the time it took.
func run(tx, rx *wire.StreamConn, size int, d time.Duration) result {
	// A ring of distinct frames.
	ring := make([][]byte, 1024)
	for i := range ring {
		ring[i] = frames.Frame(macB, macA, size)
	}
	var stop atomic.Bool
	var sent atomic.Uint64
	cpu0 := cpuTime()
	flooded := make(chan struct{})
	go func() { sent.Store(frames.Flood(tx, ring, 256, &stop)); close(flooded) }()
	var got uint64
	var first, last time.Time
	deadline := time.Now().Add(d)
	for {
		fr, err := rx.ReadFrame()
		if err != nil {
			break
		}
		fr.Release()
		got++
		// The clock is read once per 1024 frames, so that timing does
		// not weigh on the fast direct case more than on the switch.
		if got&1023 == 1 {
			last = time.Now()
			if got == 1 {
				first = last
			} else if last.After(deadline) {
				got--
				break
			}
		}
	}
	stop.Store(true)
	cpu := cpuTime() - cpu0
	// The sender's count is stored when it has stopped (a write it is
	// blocked in ends once rx is read again): the lost column needs it.
	go func() {
		for {
			fr, err := rx.ReadFrame()
			if err != nil {
				return // rx closed by the caller
			}
			fr.Release()
		}
	}()
	<-flooded
	return result{frames: got - 1, secs: last.Sub(first).Seconds(), sent: sent.Load(), cpu: cpu}
}

func socketpair() (*wire.StreamConn, *wire.StreamConn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		panic(err)
	}
	conn := func(fd int) *wire.StreamConn {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		if err != nil {
			panic(err)
		}
		f.Close()
		return wire.NewStreamConn(c)
	}
	return conn(fds[0]), conn(fds[1])
}

func direct(size int) result {
	a, b := socketpair()
	defer a.Close()
	defer b.Close()
	return run(a, b, size, *dur)
}

func switched(size int) (result, fabric.Counters) {
	dir, err := os.MkdirTemp("", "cloonix-bench")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	fab := fabric.New()
	defer fab.Close()
	a, err := frames.Port(fab, dir, "A", "lan")
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := frames.Port(fab, dir, "B", "lan")
	if err != nil {
		panic(err)
	}
	defer b.Close()
	// B speaks once so the lan learns its MAC: the traffic is unicast.
	_ = b.WriteFrame(frames.Frame(frames.Broadcast, macB, 60))
	_ = b.Flush()
	time.Sleep(20 * time.Millisecond)
	r := run(a, b, size, *dur)
	return r, fab.Port("B").Counters()
}

func main() {
	flag.Parse()
	if *short {
		*rounds, *dur = 1, 200*time.Millisecond
	}
	fmt.Printf("bench/fabric: GOMAXPROCS %d, %d rounds of %v per case taking turns, medians and ranges\nhost: %s\n\n", runtime.GOMAXPROCS(0), *rounds, *dur, stats.Host())
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "frame\tpath\tframes/s (median)\tmin-max (M/s)\tGbit/s\tCPU ns/frame\tlost\tvs direct\t")
	sizes := []int{64, 1500}
	if *only != 0 {
		sizes = []int{*only}
	}
	for _, size := range sizes {
		// The cases take turns so that load from elsewhere hits both
		// alike.
		var dFPS, sFPS, dCPU, sCPU stats.Series
		var sent, drops uint64
		for i := 0; i < *rounds; i++ {
			r := direct(size)
			dFPS.Add(r.fps())
			dCPU.Add(r.cpuNS())
			if *profile != "" {
				f, err := os.Create(*profile)
				if err != nil {
					panic(err)
				}
				_ = pprof.StartCPUProfile(f)
			}
			r, rc := switched(size)
			if *profile != "" {
				pprof.StopCPUProfile()
			}
			sFPS.Add(r.fps())
			sCPU.Add(r.cpuNS())
			sent += r.sent
			drops += rc.Drops
		}
		lost := 0.0
		if sent > 0 {
			lost = 100 * float64(drops) / float64(sent)
		}
		mrange := func(v stats.Series) string {
			m := make(stats.Series, len(v))
			for i, x := range v {
				m[i] = x / 1e6
			}
			return m.Range(2)
		}
		gbps := func(fps float64) float64 { return fps * float64(size) * 8 / 1e9 }
		fmt.Fprintf(w, "%d B\tdirect pair\t%.0f\t%s\t%.2f\t%.0f\t-\t1.00x\t\n", size, dFPS.Median(), mrange(dFPS), gbps(dFPS.Median()), dCPU.Median())
		fmt.Fprintf(w, "%d B\tswitch (1 lan)\t%.0f\t%s\t%.2f\t%.0f\t%.1f%%\t%s\t\n", size, sFPS.Median(), mrange(sFPS), gbps(sFPS.Median()), sCPU.Median(), lost, stats.Ratio(sFPS.Median(), dFPS.Median()))
	}
	w.Flush()
	fmt.Println("\nload average after:", stats.Load())
}
