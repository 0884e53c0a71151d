package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
	"cloonix/internal/tux"
)

// newAddTuxCmd is `cloonix ctrl add tux KIND NAME [flags]`, one
// subcommand per kind.
func newAddTuxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tux",
		Short: "add a tux (a way out of the lab): " + strings.Join(proto.TuxKindNames(), ", "),
	}
	for _, k := range tux.Kinds {
		cmd.AddCommand(kindCmd(k))
	}
	return cmd
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

// tuxOptions are one kind's flags, by option name (add_tux's attributes).
type tuxOptions map[string]*string

func (o tuxOptions) values() map[string]string {
	m := make(map[string]string, len(o))
	for n, v := range o {
		m[n] = *v
	}
	return m
}

// kindCmd is `cloonix ctrl add tux KIND NAME [flags]`, made from the
// kind's own description (package tux, one file per kind).
func kindCmd(k tux.Kind) *cobra.Command {
	u := k.Usage()
	use := k.Name() + " NAME"
	if u.Args != "" {
		use += " " + u.Args
	}
	o := tuxOptions{}
	bools := map[string]*bool{} // switches: given means "true"
	c := &cobra.Command{
		Use:   use,
		Short: u.Short,
		Long:  u.Long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := o.values()
			for n, b := range bools {
				if *b {
					v[n] = "true"
				}
			}
			return addTux(k.Name(), args[0], v)
		},
	}
	for _, f := range u.Flags {
		if f.Bool {
			bools[f.Name] = c.Flags().Bool(f.Name, false, f.Usage)
			continue
		}
		o[f.Name] = c.Flags().String(f.Name, "", f.Usage)
	}
	return c
}

// newForwardCmd is `cloonix ctrl forward add|del`.
func newForwardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "port forwards of a slirp tux (host address to guest address)",
	}
	var public bool
	add := &cobra.Command{
		Use:   "add NAME tcp|udp HOSTADDR:PORT GUESTIP:PORT",
		Short: "forward HOSTADDR:PORT on the host to GUESTIP:PORT behind slirp NAME",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(&proto.ForwardAdd{Name: args[0], Proto: args[1], Host: args[2], Guest: args[3], Public: public}, nil)
		},
	}
	add.Flags().BoolVar(&public, "public", false, "allow a host address beyond loopback (e.g. 0.0.0.0:PORT): the guest's port is then open to the network")
	cmd.AddCommand(add, &cobra.Command{
		Use:   "del NAME tcp|udp HOSTADDR:PORT [GUESTIP:PORT]",
		Short: "remove a forward",
		Args:  cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(&proto.ForwardDel{Name: args[0], Proto: args[1], Host: args[2]}, nil)
		},
	})
	return cmd
}

// newTuxHelperCmd is what the switch runs for each tux; not for users.
func newTuxHelperCmd() *cobra.Command {
	return &cobra.Command{
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
}

func init() {
	ctrlAddCmd.AddCommand(newAddTuxCmd())
	ctrlDelCmd.AddCommand(simple("tux NAME", "stop a tux's helper and remove its port", 1,
		func(a []string) proto.Request { return &proto.DelTux{Name: a[0]} }))
	ctrlCmd.AddCommand(newForwardCmd())
	rootCmd.AddCommand(newTuxHelperCmd())
}
