package main

import (
	"github.com/spf13/cobra"
)

var tuxRemote, tuxVNI, tuxVXPort, tuxLocal string

var addVXLANCmd = &cobra.Command{
	Use:   "vxlan NAME --remote IP[,IP...] --vni N [--port 4789] [--local IP]",
	Short: "carry the lans of this tux as standard VXLAN (RFC 7348) over UDP to other hosts",
	Long: `Carry the frames of the lans this tux is attached to as VXLAN over UDP
to one or more remotes: another cloonix's vxlan tux, a Linux vxlan device
(ip link add vx0 type vxlan id N remote IP dstport 4789) or a switch.
Broadcast and unknown destinations go to every remote; the tux learns
behind which remote each MAC lives. The tux listens on --port and sends
to the remotes' --port. VXLAN adds 50 bytes on an IPv4 underlay: give
guests an MTU of (underlay MTU - 50), or the underlay jumbo frames; see
docs/multi-host.md.`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return addTux("vxlan", args[0], map[string]string{"remote": tuxRemote, "vni": tuxVNI, "port": tuxVXPort, "local": tuxLocal})
	},
}

func init() {
	f := addVXLANCmd.Flags()
	f.StringVar(&tuxRemote, "remote", "", "IP address(es) of the other ends, comma-separated")
	f.StringVar(&tuxVNI, "vni", "", "VXLAN network identifier, 0 to 16777215, the same at every end")
	f.StringVar(&tuxVXPort, "port", "", "UDP port to listen on and send to (default 4789)")
	f.StringVar(&tuxLocal, "local", "", "local address to listen on and send from (default: any)")
	addTuxCmd.AddCommand(addVXLANCmd)
}
