// Package hostsh runs the shell commands the host-side benchmarks need
// (namespaces, veths, iperf3) and undoes them at the end, last first.
package hostsh

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// Tag prefixes every name a benchmark creates, so runs never collide
// with each other or with tests. Set it once at start.
var Tag = fmt.Sprintf("b%d", os.Getpid()%100000)

var undo []string

// Sh runs cmd with sh -c and returns its combined output.
func Sh(cmd string) (string, error) {
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return string(out), nil
}

// Must runs cmd and, when it fails, undoes everything and exits.
func Must(cmd string) string {
	out, err := Sh(cmd)
	if err != nil {
		Cleanup()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return out
}

// Undo registers cmd to run at Cleanup.
func Undo(cmd ...string) { undo = append(undo, cmd...) }

// Cleanup runs the registered commands, last first.
func Cleanup() {
	for i := len(undo) - 1; i >= 0; i-- {
		_, _ = Sh(undo[i])
	}
	undo = nil
}

// Netns makes namespace Tag+name with lo up; Cleanup deletes it.
func Netns(name string) string {
	ns := Tag + name
	Must("ip netns add " + ns)
	Undo("ip netns del " + ns)
	Must("ip netns exec " + ns + " ip link set lo up")
	return ns
}

var gbitRe = regexp.MustCompile(`([0-9.]+) ([GMK])bits/sec\s+receiver`)

// Iperf runs iperf3 for secs seconds from nsA to a one-shot server in
// nsB at addr, once the path answers a ping; Gbit/s at the receiver.
func Iperf(nsA, nsB, addr string, secs int) float64 {
	Must(fmt.Sprintf("ip netns exec %s iperf3 -s -1 -D -I /tmp/%s-iperf.pid", nsB, Tag))
	Undo(fmt.Sprintf("kill $(cat /tmp/%s-iperf.pid) 2>/dev/null; rm -f /tmp/%s-iperf.pid", Tag, Tag))
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 50; i++ {
		if _, err := Sh(fmt.Sprintf("ip netns exec %s busybox ping -c 1 -W 1 %s", nsA, addr)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := Must(fmt.Sprintf("ip netns exec %s iperf3 -c %s -t %d", nsA, addr, secs))
	m := gbitRe.FindStringSubmatch(out)
	if m == nil {
		fmt.Fprintln(os.Stderr, out)
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "M":
		v /= 1000
	case "K":
		v /= 1e6
	}
	return v
}
