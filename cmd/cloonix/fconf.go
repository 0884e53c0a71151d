package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/topology"
)

var fconfCmd = &cobra.Command{
	Use:   "fconf",
	Short: "load a topology file or demo folder into the switch, or save the running lab as one",
	Long: "fconf reads a topology file (the seed's <TOPOLOGY> format, see docs/topology.md) and makes the\n" +
		"running lab match it, or writes the running lab as such a file.",
}

// fconfOptions are fconf load's flags.
type fconfOptions struct {
	plan, add bool
	timeout   time.Duration
	as        string   // foreign labs: cnt, uml or kvm
	images    []string // foreign labs: IMAGE=ROOTFS
}

var fconfOpts fconfOptions

var fconfLoadCmd = &cobra.Command{
	Use:   "load PATH",
	Short: "make the running lab match a topology file, a demo folder, a Kathará lab or a containerlab topology",
	Long: "load checks the whole file (and the demo folder around it) before changing anything, then\n" +
		"applies only the difference to the running lab: new lans, tux and VMs are added (VMs boot in\n" +
		"parallel), lan changes are made live without rebooting anyone, VMs and tux not in the file are\n" +
		"removed, and a VM whose type, memory, cpu, image or eth count changed is replaced. It returns\n" +
		"when every new guest is ready (exit 0) or names those that failed (exit 1).\n" +
		"Raw ports and the switch's default slirp `nat` (when the file does not name it) are left alone;\n" +
		"with --add, so is everything else the file does not name.\n" +
		"PATH may also be a Kathará lab folder (holding lab.conf) or a containerlab FILE.clab.yml: it is\n" +
		"converted into a demo folder first (see `fconf convert`, --as, --image and docs/foreign-labs.md).",
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return fconfLoad(args[0], os.Stdout, fconfOpts)
	},
}

var fconfSaveCmd = &cobra.Command{
	Use:   "save FILE | --with-disks DIR",
	Short: "write the running lab as a topology file (- for standard output), or as a folder with every guest's disk",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		defer c.Close()
		if fconfWithDisks { // fconf_disks.go
			return saveWithDisks(c, args[0], os.Stdout)
		}
		lab, err := c.List()
		if err != nil {
			return err
		}
		t := topology.FromLab(lab)
		if args[0] == "-" {
			_, err := os.Stdout.Write(t.Bytes())
			return err
		}
		if err := t.WriteFile(args[0]); err != nil {
			return err
		}
		fmt.Printf("saved %d VMs, %d tux, %d lans to %s\n", len(t.VMs), len(t.Tux), len(lab.Lans), args[0])
		return nil
	},
}

func fconfLoad(path string, out io.Writer, o fconfOptions) error {
	// Everything about the file is checked before the switch is asked
	// anything, so a bad file changes nothing.
	demo, err := loadDemo(path, out, o)
	if err != nil {
		return err
	}
	for _, w := range demo.Warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	c, err := connect()
	if err != nil {
		return err
	}
	defer c.Close()
	lab, err := c.List()
	if err != nil {
		return err
	}
	plan := topology.DiffWith(lab, demo.Topology, topology.Options{Add: o.add})
	plan.WaitReady = func(names []string) error { // <after>: boot order
		failed, err := topology.WaitGuests(context.Background(), c, names, topology.WaitOptions{Timeout: o.timeout, Out: out})
		if err == nil && len(failed) > 0 {
			err = fmt.Errorf("not ready: %s", strings.Join(failed, ", "))
		}
		return err
	}
	if o.plan {
		fmt.Fprint(out, plan.String())
		for _, k := range plan.Keep {
			fmt.Fprintln(out, "left alone:", k)
		}
		return nil
	}
	// Events tell why a guest failed (its exit, its console log); states
	// come from list, so a missed event costs nothing.
	details := topology.NewDetails()
	if ev, err := c.Subscribe(); err == nil {
		go details.Follow(ev)
	}
	start := time.Now()
	err = plan.Apply(c, demo.Dir, func(s topology.Step) { fmt.Fprintln(out, s) })
	if err != nil {
		return err
	}
	// Wait for the guests this load started, and for any of the file's
	// guests still booting from before.
	wait := topology.GuestsToWait(plan, lab, demo.Topology)
	if len(wait) == 0 {
		if plan.Empty() {
			fmt.Fprintln(out, "nothing to change: the running lab matches", demo.File)
		} else {
			fmt.Fprintf(out, "lab updated in %.1fs\n", time.Since(start).Seconds())
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	failed, err := topology.WaitGuests(ctx, c, wait, topology.WaitOptions{Timeout: o.timeout, Out: out, TTY: isTerminal(out), Details: details})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d guests failed: %s (see `cloonix console VM` and the switch log)", len(failed), len(wait), strings.Join(failed, ", "))
	}
	fmt.Fprintf(out, "lab ready: %d guests in %.1fs\n", len(wait), time.Since(start).Seconds())
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func init() {
	fconfLoadCmd.Flags().BoolVar(&fconfOpts.plan, "plan", false, "print the changes the load would make, and change nothing")
	fconfLoadCmd.Flags().BoolVar(&fconfOpts.add, "add", false, "keep the VMs, tux and lans the file does not name (load several demos side by side)")
	fconfLoadCmd.Flags().DurationVar(&fconfOpts.timeout, "timeout", 5*time.Minute, "how long a guest may take to be ready")
	fconfSaveCmd.Flags().BoolVar(&fconfWithDisks, "with-disks", false, "write a folder: the topology, the demo files and each guest's disk (disks/), loadable on another switch")
	fconfCmd.AddCommand(fconfLoadCmd, fconfSaveCmd)
	rootCmd.AddCommand(fconfCmd)
}
