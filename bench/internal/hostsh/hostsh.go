// Package hostsh runs the shell commands the host-side benchmarks need
// (namespaces, veths, iperf3) and undoes them at the end, last first.
package hostsh

import (
	"fmt"
	"os"
	"os/exec"
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
