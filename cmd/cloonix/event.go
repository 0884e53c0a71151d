package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// eventOptions are event's flags.
type eventOptions struct{ json bool }

func newEventCmd() *cobra.Command {
	var o eventOptions
	cmd := &cobra.Command{
		Use:   "event",
		Short: "stream the switch's events, one per line, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(func(c *proto.Client) error {
				ev, err := c.Subscribe()
				if err != nil {
					return err
				}
				enc := json.NewEncoder(os.Stdout)
				for e := range ev {
					if o.json {
						out := map[string]any{"type": e.Type, "time": time.Now().Format(time.RFC3339Nano)}
						for k, v := range e.Attrs {
							out[k] = v
						}
						_ = enc.Encode(out)
					} else {
						fmt.Printf("%s %s\n", time.Now().Format("15:04:05.000"), e.String())
					}
				}
				return fmt.Errorf("connection to the switch lost")
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "one JSON object per line")
	return cmd
}

func init() {
	rootCmd.AddCommand(newEventCmd())
}
