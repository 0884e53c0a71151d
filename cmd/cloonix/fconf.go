package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
	"cloonix/internal/topology"
)

var fconfCmd = &cobra.Command{
	Use:   "fconf",
	Short: "load a topology file or demo folder into the switch, or save the running lab as one",
	Long: "fconf reads a topology file (the seed's <TOPOLOGY> format, see docs/topology.md) and makes the\n" +
		"running lab match it, or writes the running lab as such a file.",
}

var (
	fconfPlan    bool
	fconfAdd     bool
	fconfTimeout time.Duration
)

var fconfLoadCmd = &cobra.Command{
	Use:   "load PATH",
	Short: "make the running lab match a topology file, or a demo folder holding `topology`",
	Long: "load checks the whole file (and the demo folder around it) before changing anything, then\n" +
		"applies only the difference to the running lab: new lans, tux and VMs are added (VMs boot in\n" +
		"parallel), lan changes are made live without rebooting anyone, VMs and tux not in the file are\n" +
		"removed, and a VM whose type, memory, cpu, image or eth count changed is replaced. It returns\n" +
		"when every new guest is ready (exit 0) or names those that failed (exit 1).\n" +
		"Raw ports and the switch's default slirp `nat` (when the file does not name it) are left alone;\n" +
		"with --add, so is everything else the file does not name.",
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return fconfLoad(args[0], os.Stdout)
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

func fconfLoad(path string, out io.Writer) error {
	// Everything about the file is checked before the switch is asked
	// anything, so a bad file changes nothing.
	demo, err := topology.Load(path)
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
	plan := topology.DiffWith(lab, demo.Topology, topology.Options{Add: fconfAdd})
	if fconfPlan {
		fmt.Fprint(out, plan.String())
		for _, k := range plan.Keep {
			fmt.Fprintln(out, "left alone:", k)
		}
		return nil
	}
	// Events tell why a guest failed (its exit, its console log); states
	// come from list, so a missed event costs nothing.
	details := newDetails()
	if ev, err := c.Subscribe(); err == nil {
		go details.follow(ev)
	}
	start := time.Now()
	err = plan.Apply(c, demo.Dir, func(s topology.Step) { fmt.Fprintln(out, s) })
	if err != nil {
		return err
	}
	// Wait for the guests this load started, and for any of the file's
	// guests still booting from before.
	wait := plan.NewVMs()
	for _, v := range lab.VMs {
		if demo.Topology.VM(v.Name) != nil && v.State == "booting" && !contains(wait, v.Name) {
			wait = append(wait, v.Name)
		}
	}
	if len(wait) == 0 {
		if plan.Empty() {
			fmt.Fprintln(out, "nothing to change: the running lab matches", demo.File)
		} else {
			fmt.Fprintf(out, "lab updated in %.1fs\n", time.Since(start).Seconds())
		}
		return nil
	}
	failed, err := waitGuests(c, wait, fconfTimeout, out, isTerminal(out), details)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d guests failed: %s (see `cloonix console VM` and the switch log)", len(failed), len(wait), strings.Join(failed, ", "))
	}
	fmt.Fprintf(out, "lab ready: %d guests in %.1fs\n", len(wait), time.Since(start).Seconds())
	return nil
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// vmDetails keeps the last detail events gave about each VM.
type vmDetails struct {
	mu sync.Mutex
	m  map[string]string
}

func newDetails() *vmDetails { return &vmDetails{m: map[string]string{}} }

func (v *vmDetails) follow(ev <-chan proto.Event) {
	for e := range ev {
		name := e.Attrs["name"]
		var d string
		switch e.Type {
		case "vm_state":
			d = e.Attrs["detail"]
		case "vm_boot_timeout":
			d = "no answer from its agent after " + e.Attrs["after"] + ", console log " + e.Attrs["console"]
		}
		if name != "" && d != "" {
			v.mu.Lock()
			v.m[name] = d
			v.mu.Unlock()
		}
	}
}

func (v *vmDetails) get(name string) string {
	if v == nil {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[name]
}

func orBooting(s string) string {
	if s == "" {
		return "booting"
	}
	return s
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// labSource is what waitGuests needs of a switch connection.
type labSource interface {
	List() (*proto.Lab, error)
	Done() <-chan struct{}
}

// pollEvery is how often waitGuests asks for the lab.
var pollEvery = 200 * time.Millisecond

// bootGuest is one machine being waited for.
type bootGuest struct {
	name  string
	state string // booting, ready, failed
	why   string // for failed: the state or "not ready after ..."
	took  time.Duration
}

func (g *bootGuest) line(now time.Duration) string {
	switch g.state {
	case "ready":
		return fmt.Sprintf("%-16s ready    %6.1fs", g.name, g.took.Seconds())
	case "failed":
		return fmt.Sprintf("%-16s FAILED   %6.1fs  %s", g.name, g.took.Seconds(), g.why)
	}
	return fmt.Sprintf("%-16s booting  %6.1fs", g.name, now.Seconds())
}

// waitGuests follows the guests' states until each is ready (running:
// its agent answered) or failed (crashed, stopped, gone, or not ready
// within timeout). On a terminal the lines are redrawn in place; elsewhere
// one line is printed per change. It returns the failed ones.
func waitGuests(c labSource, names []string, timeout time.Duration, out io.Writer, tty bool, details *vmDetails) ([]string, error) {
	start := time.Now()
	gs := make([]*bootGuest, len(names))
	for i, n := range names {
		gs[i] = &bootGuest{name: n, state: "booting"}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	intr := make(chan os.Signal, 1)
	signal.Notify(intr, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(intr)
	if !tty {
		fmt.Fprintf(out, "booting %s\n", strings.Join(names, ", "))
	}
	drawn := false
	draw := func() {
		if !tty {
			return
		}
		if drawn {
			fmt.Fprintf(out, "\x1b[%dA", len(gs))
		}
		el := time.Since(start)
		for _, g := range gs {
			fmt.Fprintf(out, "\r\x1b[2K  %s\n", g.line(el))
		}
		drawn = true
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		lab, err := c.List()
		if err != nil {
			return nil, fmt.Errorf("following the guests: %v", err)
		}
		state := map[string]string{}
		for _, v := range lab.VMs {
			state[v.Name] = v.State
		}
		el := time.Since(start)
		pending := 0
		for _, g := range gs {
			if g.state != "booting" {
				continue
			}
			s, ok := state[g.name]
			switch {
			case s == "running":
				g.state, g.took = "ready", el
			case !ok:
				g.state, g.took, g.why = "failed", el, "deleted"
			case s == "crashed" || s == "stopped":
				g.state, g.took, g.why = "failed", el, s
				if d := details.get(g.name); d != "" {
					g.why += ": " + d
				}
			case el > timeout:
				g.state, g.took, g.why = "failed", el, "still "+orBooting(s)+", over --timeout"
				if d := details.get(g.name); d != "" {
					g.why += "; " + d
				}
			default:
				pending++
				continue
			}
			if !tty {
				fmt.Fprintf(out, "  %s\n", g.line(el))
			}
		}
		draw()
		if pending == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-intr:
			return nil, errors.New("interrupted; the lab stays as it is (`cloonix ctrl list`)")
		case <-c.Done():
			return nil, errors.New("the switch closed the connection while guests were booting")
		}
	}
	var failed []string
	for _, g := range gs {
		if g.state == "failed" {
			failed = append(failed, fmt.Sprintf("%s (%s after %.1fs)", g.name, g.why, g.took.Seconds()))
		}
	}
	return failed, nil
}

func init() {
	fconfLoadCmd.Flags().BoolVar(&fconfPlan, "plan", false, "print the changes the load would make, and change nothing")
	fconfLoadCmd.Flags().BoolVar(&fconfAdd, "add", false, "keep the VMs, tux and lans the file does not name (load several demos side by side)")
	fconfLoadCmd.Flags().DurationVar(&fconfTimeout, "timeout", 5*time.Minute, "how long a guest may take to be ready")
	fconfSaveCmd.Flags().BoolVar(&fconfWithDisks, "with-disks", false, "write a folder: the topology, the demo files and each guest's disk (disks/), loadable on another switch")
	fconfCmd.AddCommand(fconfLoadCmd, fconfSaveCmd)
	rootCmd.AddCommand(fconfCmd)
}
