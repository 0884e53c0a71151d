package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
	"cloonix/internal/tux"
)

var (
	tuxSubnet, tuxIfname            string
	tuxPeer, tuxListen, tuxPassword string
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

var addSlirpCmd = &cobra.Command{
	Use:   "slirp NAME",
	Short: "a NAT network (DHCP, DNS, the host at .2, forwards), QEMU's 10.0.2.0/24 plan unless --subnet",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return addTux("slirp", args[0], map[string]string{"subnet": tuxSubnet})
	},
}

var addTapCmd = &cobra.Command{
	Use:   "tap NAME",
	Short: "a tap interface of the host (named NAME unless --ifname); needs CAP_NET_ADMIN",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return addTux("tap", args[0], map[string]string{"ifname": tuxIfname})
	},
}

var addT2TCmd = &cobra.Command{
	Use:   "t2t NAME (--peer HOST:PORT | --listen ADDR:PORT)",
	Short: "share the lans of this tux with a t2t tux of another cloonix, over TCP",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		if (tuxPeer == "") == (tuxListen == "") {
			return fmt.Errorf("give exactly one of --peer HOST:PORT (dial) or --listen ADDR:PORT")
		}
		return addTux("t2t", args[0], map[string]string{"peer": tuxPeer, "listen": tuxListen, "password": tuxPassword})
	},
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
	addSlirpCmd.Flags().StringVar(&tuxSubnet, "subnet", "", "IPv4 subnet (default "+tux.DefaultSubnet+"; gateway .2, DNS .3, leases from .15)")
	addTapCmd.Flags().StringVar(&tuxIfname, "ifname", "", "host interface name (default: NAME)")
	addT2TCmd.Flags().StringVar(&tuxPeer, "peer", "", "dial the other cloonix's t2t tux at HOST:PORT")
	addT2TCmd.Flags().StringVar(&tuxListen, "listen", "", "wait for the other cloonix on ADDR:PORT")
	addT2TCmd.Flags().StringVar(&tuxPassword, "password", "", "shared password (default: <password> of the config)")
	addTuxCmd.AddCommand(addSlirpCmd, addTapCmd, addT2TCmd)
	ctrlAddCmd.AddCommand(addTuxCmd)
	ctrlDelCmd.AddCommand(simple("tux NAME", "stop a tux's helper and remove its port", 1,
		func(a []string) proto.Request { return &proto.DelTux{Name: a[0]} }))
	forwardCmd.AddCommand(forwardAddCmd, forwardDelCmd)
	ctrlCmd.AddCommand(forwardCmd)
	rootCmd.AddCommand(tuxHelperCmd)
}
