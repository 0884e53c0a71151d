package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

var ctrlCmd = &cobra.Command{
	Use:   "ctrl",
	Short: "send one command to the switch",
}

var ctrlAddCmd = &cobra.Command{Use: "add", Short: "add a lan, port, vm or tux"}
var ctrlDelCmd = &cobra.Command{Use: "del", Short: "delete a lan, port, vm or tux"}

// simple makes a command of n arguments -> the request req makes of them.
func simple(use, short string, n int, req func(args []string) proto.Request) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(n),
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(req(args), nil)
		},
	}
}

// portOptions are add port's flags.
type portOptions struct{ kind, tcp string }

func newAddPortCmd() *cobra.Command {
	var o portOptions
	cmd := &cobra.Command{
		Use:   "port NAME",
		Short: "add a raw port for an external program; prints its socket as the last line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p proto.PortReply
			if err := do(&proto.AddPort{Name: args[0], Kind: o.kind, TCP: o.tcp}, &p); err != nil {
				return err
			}
			fmt.Println(p.Socket)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kind, "kind", "stream", "transport: stream (QEMU -netdev stream) or dgram (QEMU -netdev dgram)")
	f.StringVar(&o.tcp, "tcp", "", "for kind stream: listen on this TCP address (HOST:PORT) instead of a unix socket")
	return cmd
}

// listOptions are list's flags.
type listOptions struct{ json bool }

func newListCmd() *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "show the running lab: machines, ports, lans, tux",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := listLab()
			if err != nil {
				return err
			}
			if o.json {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(lab)
			}
			printLab(lab)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print JSON (DESIGN section 3)")
	return cmd
}

func printLab(lab *proto.Lab) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "network %s\n", lab.Network)
	if len(lab.VMs) > 0 {
		fmt.Fprintln(w, "\nVM\tTYPE\tSTATE\tACCEL\tPID\tMEM\tROOTFS\tETHS")
		for _, v := range lab.VMs {
			var eths []string
			for _, e := range v.Eths {
				eths = append(eths, fmt.Sprintf("%s[%s]", e.Port[strings.Index(e.Port, ":")+1:], strings.Join(e.Lans, ",")))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", v.Name, v.Type, v.State, v.Accel, v.Pid, v.Mem, v.Rootfs, strings.Join(eths, " "))
		}
	}
	if len(lab.Tux) > 0 {
		fmt.Fprintln(w, "\nTUX\tKIND\tSTATE\tPID\tRESTARTS\tLANS")
		for _, t := range lab.Tux {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", t.Name, t.Kind, t.State, t.Pid, t.Restarts, strings.Join(t.Lans, ","))
			for _, f := range t.Forwards {
				fmt.Fprintf(w, "  forward\t%s\t%s -> %s\n", f.Proto, f.Host, f.Guest)
			}
		}
	}
	fmt.Fprintln(w, "\nLAN\tFRAMES IN\tBYTES IN\tDELIVERED\tPORTS")
	for _, l := range lab.Lans {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", l.Name, l.Counters.RxFrames, l.Counters.RxBytes, l.Counters.TxFrames, strings.Join(l.Ports, " "))
	}
	fmt.Fprintln(w, "\nPORT\tKIND\tPEER\tRX\tTX\tDROPS\tLANS\tSOCKET")
	for _, p := range lab.Ports {
		peer := "-"
		if p.Connected {
			peer = "up"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", p.Name, p.Kind, peer, p.Counters.RxFrames, p.Counters.TxFrames, p.Counters.Drops, strings.Join(p.Lans, ","), p.Socket)
	}
	printImpairs(w, lab) // impair.go
}

func init() {
	ctrlAddCmd.AddCommand(simple("lan NAME", "add a lan (it stays while empty)", 1,
		func(a []string) proto.Request { return &proto.AddLan{Name: a[0]} }), newAddPortCmd())
	ctrlDelCmd.AddCommand(simple("lan NAME", "delete a lan, detaching its ports", 1,
		func(a []string) proto.Request { return &proto.DelLan{Name: a[0]} }),
		simple("port NAME", "delete a raw port", 1, func(a []string) proto.Request { return &proto.DelPort{Name: a[0]} }))
	ctrlCmd.AddCommand(ctrlAddCmd, ctrlDelCmd, newListCmd(),
		simple("attach PORT LAN", "put PORT (VM:ethN, a tux or a raw port) on LAN", 2,
			func(a []string) proto.Request { return &proto.Attach{Port: a[0], Lan: a[1]} }),
		simple("detach PORT LAN", "take PORT off LAN", 2,
			func(a []string) proto.Request { return &proto.Detach{Port: a[0], Lan: a[1]} }))
	rootCmd.AddCommand(ctrlCmd)
}
