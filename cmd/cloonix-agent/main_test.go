package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSmallDeps keeps the agent small: it runs in 64 MB guests, so nothing
// of the host side (gvisor, cobra, netlink, the daemon's packages) may
// creep in through an import.
func TestSmallDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	allowed := []string{"cloonix/internal/guest", "cloonix/cmd/cloonix-agent",
		"golang.org/x/sys/", "github.com/diskfs/go-diskfs/", "github.com/djherbis/times"}
	for _, pkg := range strings.Fields(string(out)) {
		first := strings.SplitN(pkg, "/", 2)[0]
		if !strings.Contains(first, ".") && !strings.HasPrefix(pkg, "cloonix/") {
			continue // the standard library
		}
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasSuffix(a, "/") && strings.HasPrefix(pkg, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("cloonix-agent imports %s: the guest agent must stay small (see main.go)", pkg)
		}
	}
}
