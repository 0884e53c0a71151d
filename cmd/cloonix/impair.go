package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// impairOptions are impair's flags.
type impairOptions struct {
	in, out     bool
	seed        string
	isPort, lan bool
}

func newImpairCmd() *cobra.Command {
	var o impairOptions
	cmd := &cobra.Command{
		Use:   "impair PORT|LAN [delay=50ms] [jitter=5ms] [loss=1%] [rate=10mbit] [dup=0.1%] [corrupt=0.1%] [limit=N] [down] | clear",
		Short: "impair a port (both ways, or --in/--out) or every port of a lan; `clear` removes; no settings shows",
		Long: `Impair the traffic of a port, or of every port of a lan:

  delay=D     add D to every frame (us, ms, s)      jitter=J   vary the delay by up to +-J
  loss=P%     lose P% of the frames                 rate=R     cap at R bit/s (bit, kbit, mbit, gbit)
  dup=P%      duplicate P% of the frames            corrupt=P% flip one bit in P% of the frames
  limit=N     frames held by delay/rate (def. 1000) down       cut the link
  seed=N      (or --seed N) repeatable random choices

On a port the settings apply both ways unless --in (frames from the port's peer into the
switch) or --out (frames to the peer) is given; the other direction is then kept. Words
"in" and "out" in the settings give each direction its own: "in loss=5% out rate=1mbit".
On a lan they apply on the way out to each of its ports (--in for the way in), so each
frame crossing the lan is impaired once. The settings replace the previous ones of that
direction; "clear" removes them. With no settings the current ones and counters are shown.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &proto.Impair{}
			switch {
			case o.isPort && o.lan:
				return errors.New("impair: --port and --lan exclude each other")
			case o.isPort:
				req.Port = args[0]
			case o.lan:
				req.Lan = args[0]
			default:
				req.Name = args[0]
			}
			switch {
			case o.in && o.out:
				req.Dir = "both"
			case o.in:
				req.Dir = "in"
			case o.out:
				req.Dir = "out"
			}
			words := args[1:]
			if len(words) == 1 && words[0] == "clear" {
				if o.seed != "" {
					return errors.New("impair: --seed goes with settings, not clear")
				}
				req.Clear = true
			} else {
				for _, w := range words {
					if w == "clear" {
						return errors.New("impair: `clear` stands alone")
					}
				}
				if o.seed != "" {
					if _, err := strconv.ParseUint(o.seed, 10, 64); err != nil {
						return fmt.Errorf("impair: --seed %q: want a whole number", o.seed)
					}
					if len(words) == 0 {
						return errors.New("impair: --seed goes with settings")
					}
					words = append(words, "seed="+o.seed)
				}
				if len(words) > 0 {
					req.Spec = strings.Join(words, " ")
				}
			}
			var r proto.ImpairReply
			if err := do(req, &r); err != nil {
				return err
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			defer w.Flush()
			show := req.Spec == "" && !req.Clear
			if show {
				fmt.Fprintln(w, "PORT\tIMPAIR\tLOST\tDUPLICATED\tCORRUPTED\tOVERFLOW\tDOWN")
			}
			for _, p := range r.Ports {
				imp := p.Impair
				if imp == "" {
					imp = "-"
				}
				if show {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Port, imp, count(p.Lost), count(p.Duplicated), count(p.Corrupted), count(p.Overflow), count(p.Down))
				} else {
					fmt.Fprintf(w, "%s\t%s\n", p.Port, imp)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.in, "in", false, "only frames from the port's peer into the switch")
	f.BoolVar(&o.out, "out", false, "only frames from the switch to the port's peer")
	f.StringVar(&o.seed, "seed", "", "seed of the random choices (loss, dup, corrupt, jitter), for repeatable runs")
	f.BoolVar(&o.isPort, "port", false, "the name is a port (when a lan has the same name)")
	f.BoolVar(&o.lan, "lan", false, "the name is a lan (when a port has the same name)")
	return cmd
}

// count prints a counter of impair's reply ("-" when not given).
func count(n *uint64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatUint(*n, 10)
}

func init() {
	ctrlCmd.AddCommand(newImpairCmd())
}

// printImpairs adds the impaired ports to `ctrl list`.
func printImpairs(w io.Writer, lab *proto.Lab) {
	first := true
	for _, p := range lab.Ports {
		if p.Impair == "" {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nIMPAIRED PORT\tIMPAIR")
			first = false
		}
		fmt.Fprintf(w, "%s\t%s\n", p.Name, p.Impair)
	}
}
