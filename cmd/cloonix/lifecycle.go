package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"cloonix/internal/proto"
)

// ctrl stop vm | start vm | save vm | link (DESIGN section 10).

var (
	lcStopTimeout int
	lcStartWait   bool
)

var ctrlStopCmd = &cobra.Command{Use: "stop", Short: "stop a guest, keeping its disk, ports and lans"}
var ctrlStartCmd = &cobra.Command{Use: "start", Short: "boot a stopped guest again from its kept disk"}
var ctrlSaveCmd = &cobra.Command{Use: "save", Short: "write a standalone image of a guest's disk"}

var stopVMCmd = &cobra.Command{
	Use:   "vm NAME",
	Short: "power the guest off cleanly (then hard after --timeout); disk, MACs, ports and lans are kept",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		err := do(&proto.StopVM{Name: args[0], Timeout: proto.Int(lcStopTimeout)}, nil)
		if err == nil {
			fmt.Printf("vm %s stopped\n", args[0])
		}
		return err
	},
}

var startVMCmd = &cobra.Command{
	Use:   "vm NAME",
	Short: "boot a stopped guest from its kept disk, with the same MACs and links",
	Args:  cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		var r proto.VMReply
		if err := do(&proto.StartVM{Name: args[0], Wait: lcStartWait}, &r); err != nil {
			return err
		}
		fmt.Printf("vm %s %s\n", args[0], r.State)
		return nil
	},
}

var saveVMCmd = &cobra.Command{
	Use:   "vm NAME FILE",
	Short: "write the guest's current disk as a standalone image that boots with --rootfs FILE",
	Long: `save vm writes the guest's current disk to FILE, a new file: a qcow2 image for QEMU guests,
a raw filesystem image for UML guests (it boots under both kinds); for container nodes a
docker-archive when FILE ends in .tar, else a new directory tree. A running guest is synced
first (QEMU guests and container nodes are paused during the copy). The reference image is
never written.`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		c, err := connect()
		if err != nil {
			return err
		}
		defer c.Close()
		size, err := saveVM(c, args[0], args[1], os.Stdout)
		if err != nil {
			return err
		}
		fmt.Printf("vm %s saved to %s (%d MB)\n", args[0], args[1], size>>20)
		return nil
	},
}

// saveVM asks the switch to save name's disk to file, showing progress.
func saveVM(c *proto.Client, name, file string, out io.Writer) (int64, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return 0, err
	}
	if ev, err := c.Subscribe(); err == nil {
		go showProgress(ev, name, out)
	}
	var r proto.SavedReply
	if err := c.Do(&proto.SaveVM{Name: name, File: abs}, &r); err != nil {
		return 0, err
	}
	return r.Size, nil
}

// showProgress prints save_progress events of vm, at most every few
// seconds.
func showProgress(ev <-chan proto.Event, vm string, out io.Writer) {
	var last time.Time
	for e := range ev {
		if e.Type != "save_progress" || e.Attrs["name"] != vm {
			continue
		}
		done, _ := strconv.ParseFloat(e.Attrs["done"], 64)
		total, _ := strconv.ParseFloat(e.Attrs["total"], 64)
		if total <= 0 || time.Since(last) < 2*time.Second {
			continue
		}
		last = time.Now()
		fmt.Fprintf(out, "  saving %s: %.0f%%\n", vm, 100*done/total)
	}
}

var linkCmd = &cobra.Command{
	Use:   "link PORT down|up",
	Short: "pull (down) or plug back (up) PORT's cable: carrier seen in the guest, frames stop both ways",
	Long: `link sets PORT's link (PORT is VM:ethN or a tux name). While down, no frame passes the port
either way. QEMU guests see the carrier drop (NO-CARRIER, /sys/class/net/ethN/carrier 0);
UML guests keep their carrier (the vector transport has none) but lose the frames the same way.`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		var r proto.LinkReply
		if err := do(&proto.Link{Port: args[0], State: args[1]}, &r); err != nil {
			return err
		}
		how := "the guest sees the carrier change"
		if r.Carrier != "guest" {
			how = "frames stop in the switch; no carrier change inside"
		}
		fmt.Printf("link %s %s (%s)\n", args[0], args[1], how)
		return nil
	},
}

func init() {
	stopVMCmd.Flags().IntVar(&lcStopTimeout, "timeout", 20, "seconds the clean power-off may take before a hard stop")
	startVMCmd.Flags().BoolVar(&lcStartWait, "wait", false, "return once the guest's agent answers")
	ctrlStopCmd.AddCommand(stopVMCmd)
	ctrlStartCmd.AddCommand(startVMCmd)
	ctrlSaveCmd.AddCommand(saveVMCmd)
	ctrlCmd.AddCommand(ctrlStopCmd, ctrlStartCmd, ctrlSaveCmd, linkCmd)
}
