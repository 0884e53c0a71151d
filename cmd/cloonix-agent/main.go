// Command cloonix-agent is the guest agent: PID 1 of the busybox image and
// the agent-line server of every image cloonix builds (docs/images.md).
//
// It is its own small binary rather than a mode of cloonix because it runs
// in 64 MB guests: the whole cloonix binary (gvisor, cobra, the daemon)
// mapped 1.2 GB of virtual memory there and was OOM-killed at scale
// (issue 18). It imports only internal/guest and the standard library, so
// keep it that way: `go list -deps ./cmd/cloonix-agent` must not show
// gvisor, cobra or netlink.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"cloonix/internal/guest"
)

// The Go runtime's limits inside a guest, unless GOMEMLIMIT/GOGC are set
// (the runtime reads them first; we only set what the environment did not).
// The agent's live heap is well under 1 MB (the serial line buffers and one
// config CD); the limit keeps a burst (a large CD, many execs' outputs)
// from growing the heap beyond what a 64 MB guest can spare, and GOGC 50
// keeps the steady heap small at the cost of a little CPU.
const (
	memLimit = 24 << 20
	gcPct    = 50
)

const usage = "usage: cloonix-agent [agent] --boot | --apply | --serve\n" +
	"  --boot   busybox image worker: modules, eth names, config CD, console, rc.d, agent line\n" +
	"  --apply  eth names and the config CD, once per boot (systemd images)\n" +
	"  --serve  run /etc/rc.d and serve the agent line (systemd images)\n" +
	"As PID 1 (the busybox image's /sbin/init) it is the init and starts itself with --boot.\n"

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPct)
	}
	if os.Getpid() == 1 {
		guest.RunInit() // never returns
	}
	args := os.Args[1:]
	// "agent" first: the command line the images used when the agent was
	// the cloonix binary (`cloonix-agent agent --boot`); still accepted so
	// a systemd unit or a restarted worker of either kind works.
	if len(args) > 0 && args[0] == "agent" {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch args[0] {
	case "--boot":
		err = guest.Boot()
	case "--apply":
		err = guest.ApplyOnce()
	case "--serve":
		err = guest.Serve()
	case "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "cloonix-agent: unknown argument %q\n%s", args[0], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloonix-agent: %v\n", err)
		os.Exit(1)
	}
}
