package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
	"cloonix/internal/tux"
)

var addTuxCmd = &cobra.Command{
	Use:   "tux",
	Short: "add a tux (a way out of the lab): slirp, tap, t2t or vxlan",
}

// addTux sends add_tux with the non-empty options and prints the pid.
func addTux(kind, name string, opts map[string]string) error {
	req := &proto.AddTux{Name: name, Kind: kind}
	for k, v := range opts {
		if v != "" {
			req.Option(k, v)
		}
	}
	var r proto.TuxReply
	if err := do(req, &r); err != nil {
		return err
	}
	if r.Pid > 0 {
		fmt.Printf("tux %s (%s) started, helper pid %d\n", name, kind, r.Pid)
	}
	return nil
}

// kindCmd is `cloonix ctrl add tux KIND NAME [flags]`, made from the
// kind's own description (package tux, one file per kind).
func kindCmd(k tux.Kind) *cobra.Command {
	u := k.Usage()
	use := k.Name() + " NAME"
	if u.Args != "" {
		use += " " + u.Args
	}
	vals := map[string]*string{}
	c := &cobra.Command{
		Use:   use,
		Short: u.Short,
		Long:  u.Long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := map[string]string{}
			for n, v := range vals {
				opts[n] = *v
			}
			return addTux(k.Name(), args[0], opts)
		},
	}
	for _, f := range u.Flags {
		vals[f.Name] = c.Flags().String(f.Name, "", f.Usage)
	}
	return c
}

var forwardCmd = &cobra.Command{
	Use:   "forward",
	Short: "port forwards of a slirp tux (host address to guest address)",
}

var forwardAddCmd = &cobra.Command{
	Use:   "add NAME tcp|udp HOSTADDR:PORT GUESTIP:PORT",
	Short: "forward HOSTADDR:PORT on the host to GUESTIP:PORT behind slirp NAME",
	Args:  cobra.ExactArgs(4),
	RunE: func(cmd *cobra.Command, args []string) error {
		return do(&proto.ForwardAdd{Name: args[0], Proto: args[1], Host: args[2], Guest: args[3]}, nil)
	},
}

var forwardDelCmd = &cobra.Command{
	Use:   "del NAME tcp|udp HOSTADDR:PORT [GUESTIP:PORT]",
	Short: "remove a forward",
	Args:  cobra.RangeArgs(3, 4),
	RunE: func(cmd *cobra.Command, args []string) error {
		return do(&proto.ForwardDel{Name: args[0], Proto: args[1], Host: args[2]}, nil)
	},
}

// tuxHelperCmd is what the switch runs for each tux; not for users.
var tuxHelperCmd = &cobra.Command{
	Use:                "tux-helper KIND [FLAGS]",
	Short:              "a tux helper process (started by the switch)",
	Hidden:             true,
	DisableFlagParsing: true,
	Args:               cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		if err := tux.RunHelper(args[0], args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "tux-helper:", err)
			os.Exit(1)
		}
		return nil
	},
}

func init() {
	for _, k := range tux.Kinds {
		addTuxCmd.AddCommand(kindCmd(k))
	}
	ctrlAddCmd.AddCommand(addTuxCmd)
	ctrlDelCmd.AddCommand(simple("tux NAME", "stop a tux's helper and remove its port", 1,
		func(a []string) proto.Request { return &proto.DelTux{Name: a[0]} }))
	forwardCmd.AddCommand(forwardAddCmd, forwardDelCmd)
	ctrlCmd.AddCommand(forwardCmd)
	rootCmd.AddCommand(tuxHelperCmd)
}
