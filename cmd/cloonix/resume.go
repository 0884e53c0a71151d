package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"cloonix/internal/config"
	"cloonix/internal/daemon"
	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

// start --resume | --discard: the journal a switch that died left in its
// work_dir (internal/daemon/journal.go).

var flagResume, flagDiscard bool

func resumeArgs() []string {
	switch {
	case flagResume:
		return []string{"--resume"}
	case flagDiscard:
		return []string{"--discard"}
	}
	return nil
}

// checkJournal tells, before a switch is started, whether the journal
// allows it, and returns the guests a resume boots.
func checkJournal(cfg *config.Config) ([]string, error) {
	if flagResume && flagDiscard {
		return nil, fmt.Errorf("--resume and --discard exclude each other")
	}
	p := daemon.JournalPath(cfg.WorkDir)
	_, err := os.Stat(p)
	exists := err == nil
	switch {
	case flagDiscard:
		return nil, nil
	case flagResume && !exists:
		return nil, fmt.Errorf("no journal in %s: nothing to resume (start without --resume)", cfg.WorkDir)
	case flagResume:
		t, err := topology.ParseFile(p)
		if err != nil {
			return nil, fmt.Errorf("the journal cannot be resumed, it is left as it is: %v; repair it, or `cloonix start --discard` to start empty", err)
		}
		var vms []string
		for _, v := range t.VMs {
			if v.State != "stopped" {
				vms = append(vms, v.Name)
			}
		}
		return vms, nil
	case exists:
		return nil, fmt.Errorf("%s holds the journal of a lab whose switch ended without `cloonix stop`: `cloonix start --resume` brings it back (guests boot from their kept disks), `cloonix start --discard` starts empty", p)
	}
	return nil, nil
}

// waitResumed follows the resumed guests until each runs.
func waitResumed(sock, password string, vms []string) error {
	if len(vms) == 0 {
		return nil
	}
	c, err := proto.Dial(sock, password)
	if err != nil {
		return err
	}
	defer c.Close()
	// The switch adds the journal's guests right after it starts to answer.
	deadline := time.Now().Add(time.Minute)
	for {
		lab, err := c.List()
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, v := range lab.VMs {
			have[v.Name] = true
		}
		var missing []string
		for _, n := range vms {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("resume: %s not back after a minute; see the switch log", strings.Join(missing, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	failed, err := topology.WaitGuests(context.Background(), c, vms, topology.WaitOptions{Timeout: 5 * time.Minute, Out: os.Stdout, TTY: isTerminal(os.Stdout)})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("resume: %d of %d guests failed: %s", len(failed), len(vms), strings.Join(failed, ", "))
	}
	fmt.Printf("lab resumed: %d guests running\n", len(vms))
	return nil
}

func init() {
	for _, c := range []*pflag.FlagSet{startCmd.Flags(), switchCmd.Flags()} {
		c.BoolVar(&flagResume, "resume", false, "bring back the lab of a switch that died, from its journal in work_dir")
		c.BoolVar(&flagDiscard, "discard", false, "delete the journal a switch that died left, and start empty")
	}
}
