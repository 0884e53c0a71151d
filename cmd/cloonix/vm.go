package main

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"cloonix/internal/machine/kinds"
)

var (
	vmType, vmRootfs, vmTransport, vmKernel, vmDemo string
	vmMem, vmCPU, vmEth, vmBootTimeout              int
	vmWait                                          bool
)

var addVMCmd = &cobra.Command{
	Use:   "vm NAME",
	Short: "add a virtual machine (QEMU/KVM or UML) with its eths as ports NAME:eth0...",
	Long: `add a virtual machine. Its COW disk, config CD, sockets and logs go to work_dir/NAME;
its eths are switch ports NAME:eth0, NAME:eth1, ... (attach them with ctrl attach).
The command returns once the guest process runs (state booting); with --wait, once its agent
answers (state running) or it failed. --rootfs is an image of bulk_dir (NAME.img or NAME.qcow2)
or an absolute path to one.`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		a := map[string]string{"name": args[0], "type": vmType, "rootfs": vmRootfs}
		f := cmd.Flags()
		if f.Changed("mem") {
			a["mem"] = strconv.Itoa(vmMem)
		}
		if f.Changed("cpu") {
			a["cpu"] = strconv.Itoa(vmCPU)
		}
		if f.Changed("eth") {
			a["eth"] = strconv.Itoa(vmEth)
		}
		if vmTransport != "" {
			a["transport"] = vmTransport
		}
		if vmKernel != "" {
			a["kernel"] = vmKernel
		}
		if vmBootTimeout > 0 {
			a["boot_timeout"] = strconv.Itoa(vmBootTimeout)
		}
		if vmDemo != "" {
			abs, err := filepath.Abs(vmDemo)
			if err != nil {
				return err
			}
			a["demo"] = abs
		}
		if vmWait {
			a["wait"] = "true"
		}
		out, err := call("add_vm", a)
		if err != nil {
			return err
		}
		var v struct {
			Name  string `xml:"name,attr"`
			Pid   int    `xml:"pid,attr"`
			State string `xml:"state,attr"`
			Accel string `xml:"accel,attr"`
		}
		if err := xml.Unmarshal(out, &v); err == nil {
			acc := ""
			if v.Accel != "" {
				acc = ", " + v.Accel
			}
			fmt.Printf("vm %s %s (pid %d%s)\n", v.Name, v.State, v.Pid, acc)
		}
		return nil
	},
}

func init() {
	f := addVMCmd.Flags()
	// The node kinds are the switch's list; kvm is QEMU.
	f.StringVar(&vmType, "type", "kvm", "node kind: "+strings.Join(kinds.All().Names(), ", ")+" (kvm: QEMU, KVM when it works, TCG otherwise)")
	f.IntVar(&vmMem, "mem", 256, "memory in MB")
	f.IntVar(&vmCPU, "cpu", 1, "CPUs (UML: 1)")
	f.IntVar(&vmEth, "eth", 1, "number of eths")
	f.StringVar(&vmRootfs, "rootfs", "busybox", "root image: a name of bulk_dir or an absolute path")
	f.StringVar(&vmTransport, "uml-transport", "", "UML eth transport: bess (default) or daemon (uml_switch)")
	f.StringVar(&vmKernel, "kernel", "", "kernel (QEMU, default bulk_dir/vmlinuz) or linux binary (UML, default linux.uml)")
	f.StringVar(&vmDemo, "demo", "", "demo folder whose files_to_add_in_* trees and delete commands apply to this VM")
	f.IntVar(&vmBootTimeout, "boot-timeout", 0, "seconds before a vm_boot_timeout event (default 90, 180 under TCG)")
	f.BoolVar(&vmWait, "wait", false, "return once the guest's agent answers (or fail if it crashed or timed out)")
	ctrlAddCmd.AddCommand(addVMCmd)
	ctrlDelCmd.AddCommand(simple("vm NAME", "stop a virtual machine and free its ports and files", "del_vm", "name"))
}
